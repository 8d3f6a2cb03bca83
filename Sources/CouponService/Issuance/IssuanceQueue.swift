import Foundation
import Synchronization

/// The database side of issuance: one transaction for a group of users of one coupon.
///
/// `IssuanceStore` is the PostgreSQL implementation, the only place that knows how the transaction
/// is sent; the queue's tests use a stand-in.
protocol IssuanceDatabase: Sendable {
    /// Runs one transaction. Once it holds a connection it calls `takeGroup` for the users to issue to
    /// (an empty group sends nothing); it returns one outcome per distinct user, only after COMMIT.
    func issue(couponID: Int64, takeGroup: @escaping @Sendable () -> [String]) async throws -> [String: IssueOutcome]
}

/// The per-coupon queue in front of the database: group issuance and the issuance deadline.
///
/// Every issuance of a coupon queues on the coupon's row lock anyway; one transaction for a group
/// pays the lock, the round trip and the commit flush once instead of once per ticket. Each
/// transaction takes its group only once it holds a pooled connection, so the group holds everyone
/// who arrived until that moment. Nothing waits on purpose: an idle coupon starts a transaction at
/// once. Each request gets its own answer only after its group's COMMIT, or 503 (`DeadlineExceeded`)
/// once it has waited `timeout`, whichever comes first.
final class IssuanceQueue: Sendable {
    private struct Waiter: Sendable {
        var userID: String
        var arrived: ContinuousClock.Instant
        var continuation: CheckedContinuation<IssueOutcome, any Error>
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
    /// A request that waited this long before its group started is answered 503 without trying.
    let timeout: Duration
    private let database: any IssuanceDatabase
    private let metrics: CouponMetrics
    private let queues = Mutex<[Int64: Queue]>([:])

    init(
        database: any IssuanceDatabase, maxGroupSize: Int, maxTransactions: Int? = nil, timeout: Duration,
        metrics: CouponMetrics
    ) {
        precondition(maxGroupSize > 0 && (maxTransactions ?? 1) > 0)
        self.database = database
        self.maxGroupSize = maxGroupSize
        self.maxTransactions = maxTransactions ?? (maxGroupSize == 1 ? .max : 2)
        self.timeout = timeout
        self.metrics = metrics
    }

    func issue(couponID: Int64, userID: String) async throws -> IssueOutcome {
        try await withCheckedThrowingContinuation { continuation in
            // Modified in place: a copy of the queue would copy every waiter on every request.
            let startTransaction = queues.withLock { queues in
                queues[couponID, default: Queue()].enqueue(
                    Waiter(userID: userID, arrived: .now, continuation: continuation), maxTransactions: maxTransactions)
            }
            if startTransaction { Task { await runTransactions(couponID: couponID) } }
        }
    }

    /// Requests for the coupon waiting for a transaction to take them.
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

    private func runTransaction(couponID: Int64) async {
        let group = TakenGroup()
        do {
            let outcomes = try await withDeadline(timeout) { [database] in
                try await database.issue(couponID: couponID) { group.take { self.takeGroup(couponID: couponID) } }
            }
            answer(group.abandon(), with: outcomes)
        } catch {
            var failed = group.abandon()
            // It failed before it took its group (database down, pool exhausted): the group it would
            // have taken fails with it, or those requests would wait for a connection nobody can get.
            if failed.isEmpty { failed = takeGroup(couponID: couponID) }
            for waiter in failed { waiter.continuation.resume(throwing: error) }
        }
    }

    /// Removes the next group from the queue; answers those who waited too long.
    private func takeGroup(couponID: Int64) -> [Waiter] {
        let taken = queues.withLock { queues in queues[couponID]?.take(upTo: maxGroupSize) ?? [] }
        let now = ContinuousClock.now
        let (late, current) = taken.partitioned { now - $0.arrived >= timeout }
        for waiter in late { waiter.continuation.resume(throwing: DeadlineExceeded()) }
        if !current.isEmpty { metrics.groupSize.record(current.count) }
        return current
    }

    private func answer(_ group: [Waiter], with outcomes: [String: IssueOutcome]) {
        for (waiter, outcome) in zip(group, IssueOutcome.perRequest(group.map(\.userID), from: outcomes)) {
            if let outcome {
                waiter.continuation.resume(returning: outcome)
            } else {
                waiter.continuation.resume(throwing: IssuanceError.userMissingFromResult(waiter.userID))
            }
        }
    }

    /// The waiters one transaction took, handed back exactly once: to be answered, or failed when the
    /// transaction failed or overran its deadline. A transaction that overran and only then got a
    /// connection takes nobody, so no request is left behind without an answer.
    private final class TakenGroup: Sendable {
        private struct State {
            var waiters: [Waiter] = []
            var abandoned = false
        }
        private let state = Mutex(State())

        func take(_ takeGroup: () -> [Waiter]) -> [String] {
            state.withLock { state in
                guard !state.abandoned else { return [] }
                state.waiters = takeGroup()
                return state.waiters.map(\.userID)
            }
        }

        func abandon() -> [Waiter] {
            state.withLock { state in
                state.abandoned = true
                defer { state.waiters = [] }
                return state.waiters
            }
        }
    }
}
