import Foundation
import Synchronization

/// The database side of issuance, as the queue drives it: a connection, then one transaction on it.
///
/// `IssuanceStore` is the PostgreSQL one, the only place that knows how the transaction is sent; the
/// queue's tests use a stand-in.
protocol IssuanceDatabase: Sendable {
    associatedtype Connection: Sendable
    /// Runs `body` with a connection of its own, once the pool has one.
    func withConnection<T: Sendable>(_ body: @Sendable (Connection) async throws -> T) async throws -> T
    /// One transaction for a group of users: one answer per distinct user, returned only after COMMIT.
    func issue(couponID: Int64, userIDs: [String], on connection: Connection) async throws -> [String: TicketAnswer]
}

/// The per-coupon queue in front of the database: group issuance and the issuance deadline.
///
/// Every issuance of a coupon queues on the coupon's row lock anyway; one transaction for a group
/// pays the lock, the round trip and the commit flush once instead of once per ticket. A transaction
/// takes a connection, then its group (everyone who arrived until that moment), then issues to it.
/// Nothing waits on purpose: an idle coupon starts a transaction at once. Each request gets its own
/// answer only after its group's COMMIT, or 503 (`DeadlineExceeded`) once it has waited `timeout`,
/// whichever comes first: a transaction's deadline is what is left of its oldest request's, so time
/// spent queued counts (a younger request of its group may get its 503 early, never late). Time is
/// read from `clock`, so the tests move it by hand.
final class IssuanceQueue<Database: IssuanceDatabase, QueueClock: Clock<Duration>>: Sendable {
    private struct Waiter: Sendable {
        var userID: String
        var arrived: QueueClock.Instant
        var continuation: CheckedContinuation<TicketAnswer, any Error>

        func hasWaited(_ timeout: Duration, by now: QueueClock.Instant) -> Bool { arrived.duration(to: now) >= timeout }
    }

    private struct Queue {
        var waiting: [Waiter] = []
        var transactions = 0

        /// Adds a waiter; true when a transaction should start for it.
        mutating func enqueue(_ waiter: Waiter, maxTransactions: Int) -> Bool {
            waiting.append(waiter)
            guard transactions < maxTransactions else { return false }
            transactions += 1
            return true
        }

        /// Takes the first `limit` waiters (usually all of them, without copying any).
        mutating func take(upTo limit: Int) -> [Waiter] {
            guard waiting.count > limit else {
                let all = waiting
                waiting = []
                return all
            }
            defer { waiting.removeFirst(limit) }
            return Array(waiting.prefix(limit))
        }
    }

    /// Largest group in one transaction; 1 turns grouping off (one transaction per request).
    let maxGroupSize: Int
    /// Transactions per coupon: with groups, the next one is already waiting on the row lock, its
    /// statements sent, while the current one commits, so the lock is never idle for a round trip.
    /// Without groups, as many as there are requests (the pool bounds them).
    let maxTransactions: Int
    /// The longest a request waits for its answer, queued and in its transaction: then 503.
    let timeout: Duration
    private let database: Database
    private let clock: QueueClock
    private let queues = Mutex<[Int64: Queue]>([:])

    init(
        database: Database, maxGroupSize: Int, maxTransactions: Int? = nil, timeout: Duration, clock: QueueClock
    ) {
        precondition(maxGroupSize > 0 && (maxTransactions ?? 1) > 0)
        self.database = database
        self.maxGroupSize = maxGroupSize
        self.maxTransactions = maxTransactions ?? (maxGroupSize == 1 ? .max : 2)
        self.timeout = timeout
        self.clock = clock
    }

    func issue(couponID: Int64, userID: String) async throws -> TicketAnswer {
        try await withCheckedThrowingContinuation { continuation in
            // Modified in place: a copy of the queue would copy every waiter on every request.
            let startTransaction = queues.withLock { queues in
                queues[couponID, default: Queue()].enqueue(
                    Waiter(userID: userID, arrived: clock.now, continuation: continuation), maxTransactions: maxTransactions)
            }
            if startTransaction { Task { await runTransactions(couponID: couponID) } }
        }
    }

    /// Requests for the coupon waiting for a transaction to take them: how the queue's tests know a
    /// request is parked, which nothing else can tell without waiting on real time.
    func waitingCount(couponID: Int64) -> Int {
        queues.withLock { $0[couponID]?.waiting.count ?? 0 }
    }

    /// Runs transactions for one coupon until nobody is waiting.
    private func runTransactions(couponID: Int64) async {
        repeat {
            await runTransaction(couponID: couponID)
        } while queues.withLock({ queues in
            guard let queue = queues[couponID] else { return false }
            guard queue.waiting.isEmpty else { return true }
            if queue.transactions <= 1 {
                queues[couponID] = nil
            } else {
                queues[couponID]?.transactions -= 1
            }
            return false
        })
    }

    /// A connection, then the group, then the transaction; then the answers.
    private func runTransaction(couponID: Int64) async {
        let group = TakenGroup()
        do {
            let answers = try await withDeadline(timeLeft(couponID: couponID), clock: clock) { [self] () -> [String: TicketAnswer] in
                try await database.withConnection { connection -> [String: TicketAnswer] in
                    let userIDs = group.take { takeGroup(couponID: couponID) }
                    guard !userIDs.isEmpty else { return [:] }
                    return try await database.issue(couponID: couponID, userIDs: userIDs, on: connection)
                }
            }
            answer(group.handBack(), with: answers)
        } catch {
            var failed = group.handBack()
            // It failed before it took its group: with the database down, the group it would have
            // taken fails with it, or those requests would wait for a connection nobody can get; at
            // its deadline (the pool exhausted), those whose own deadline has passed, the others
            // left to the next transaction.
            if failed.isEmpty {
                failed = error is DeadlineExceeded ? takeExpired(couponID: couponID) : takeGroup(couponID: couponID)
            }
            for waiter in failed { waiter.continuation.resume(throwing: error) }
        }
    }

    /// What is left of the deadline of the oldest request still within it: the one a transaction
    /// starting now takes first (the queue is in arrival order).
    private func timeLeft(couponID: Int64) -> Duration {
        let now = clock.now
        let oldest = queues.withLock { queues in
            queues[couponID]?.waiting.first { !$0.hasWaited(timeout, by: now) }?.arrived
        }
        return oldest.map { timeout - $0.duration(to: now) } ?? timeout
    }

    /// Removes the requests whose deadline has passed (the first ones: the queue is in arrival order).
    private func takeExpired(couponID: Int64) -> [Waiter] {
        let now = clock.now
        return queues.withLock { queues in
            guard let waiting = queues[couponID]?.waiting else { return [] }
            let expired = waiting.prefix { $0.hasWaited(timeout, by: now) }
            queues[couponID]?.waiting.removeFirst(expired.count)
            return Array(expired)
        }
    }

    /// Removes the next group from the queue; answers those who waited too long.
    private func takeGroup(couponID: Int64) -> [Waiter] {
        let taken = queues.withLock { queues in queues[couponID]?.take(upTo: maxGroupSize) ?? [] }
        let now = clock.now
        var current: [Waiter] = []
        current.reserveCapacity(taken.count)
        for waiter in taken {
            if waiter.hasWaited(timeout, by: now) {
                waiter.continuation.resume(throwing: DeadlineExceeded())
            } else {
                current.append(waiter)
            }
        }
        return current
    }

    private func answer(_ group: [Waiter], with answers: [String: TicketAnswer]) {
        for (waiter, answer) in zip(group, TicketAnswer.perRequest(group.map(\.userID), from: answers)) {
            if let answer {
                waiter.continuation.resume(returning: answer)
            } else {
                waiter.continuation.resume(throwing: IssuanceError.userMissingFromResult(waiter.userID))
            }
        }
    }

    /// The waiters one transaction took, handed back exactly once: to be answered, or failed when the
    /// transaction failed or overran its deadline. Once handed back it takes nobody, so a transaction
    /// that overran and only then got a connection leaves no request without an answer.
    private final class TakenGroup: Sendable {
        private struct State {
            var waiters: [Waiter] = []
            var handedBack = false
        }
        private let state = Mutex(State())

        /// Takes the group `takeGroup` gives, unless the group was already handed back; its users.
        func take(_ takeGroup: () -> [Waiter]) -> [String] {
            state.withLock { state in
                guard !state.handedBack else { return [] }
                state.waiters = takeGroup()
                return state.waiters.map(\.userID)
            }
        }

        /// The waiters taken so far, for the caller to answer; nobody is taken after this.
        func handBack() -> [Waiter] {
            state.withLock { state in
                state.handedBack = true
                defer { state.waiters = [] }
                return state.waiters
            }
        }
    }
}
