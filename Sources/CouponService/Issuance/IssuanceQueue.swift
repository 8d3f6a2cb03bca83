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
/// pays the lock, the round trip and the commit flush once instead of once per ticket. A coupon's
/// runner (a task, at most `maxTransactions` per coupon) takes a connection, then its group
/// (everyone who arrived until that moment), then issues to it, and goes on with the next group
/// while anyone waits: one task owns a group from the queue to COMMIT. Nothing waits on purpose: an
/// idle coupon starts a transaction at once.
///
/// Each request gets its own answer only after its group's COMMIT, or 503 (`DeadlineExceeded`) once
/// it has waited `timeout`, whichever comes first. One task keeps every deadline (`keepDeadlines`),
/// not two per transaction: it sleeps until the earliest, answers the requests still queued whose
/// time is up, and abandons a transaction whose oldest request's time is up (its group answered
/// 503, its task cancelled, its place taken by a new runner), so a stuck transaction holds no answer
/// hostage and the coupon's queue moves on. A younger request of a group may get its 503 early, never
/// late. Time is read from `clock`, so the tests move it by hand.
final class IssuanceQueue<Database: IssuanceDatabase, QueueClock: Clock<Duration>>: Sendable {
    private struct Waiter: Sendable {
        var userID: String
        var arrived: QueueClock.Instant
        var continuation: CheckedContinuation<TicketAnswer, any Error>

        func hasWaited(_ timeout: Duration, by now: QueueClock.Instant) -> Bool { arrived.duration(to: now) >= timeout }
    }

    /// A runner of one coupon: its task, and the transaction it is in.
    private struct Runner {
        var task: Task<Void, Never>?
        var transaction: Transaction?
    }

    private struct Queue {
        var waiting: [Waiter] = []
        var runners: [Int: Runner] = [:]

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

    private struct State {
        var queues: [Int64: Queue] = [:]
        var nextRunner = 0
        /// Whether the deadline keeper runs (it ends when nothing is pending).
        var keeping = false

        /// Adds a runner to the coupon's queue; its id.
        mutating func addRunner(couponID: Int64) -> Int {
            nextRunner += 1
            queues[couponID, default: Queue()].runners[nextRunner] = Runner()
            return nextRunner
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
    private let state = Mutex(State())

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
            let (runner, keeper) = state.withLock { state in
                state.queues[couponID, default: Queue()].waiting.append(
                    Waiter(userID: userID, arrived: clock.now, continuation: continuation))
                let runner = state.queues[couponID]!.runners.count < maxTransactions ? state.addRunner(couponID: couponID) : nil
                defer { state.keeping = true }
                return (runner, !state.keeping)
            }
            if let runner { start(runner, couponID: couponID) }
            if keeper { Task { await keepDeadlines() } }
        }
    }

    /// Requests for the coupon waiting for a transaction to take them: how the queue's tests know a
    /// request is parked, which nothing else can tell without waiting on real time.
    func waitingCount(couponID: Int64) -> Int {
        state.withLock { $0.queues[couponID]?.waiting.count ?? 0 }
    }

    /// Starts the runner's task, and keeps it so the deadline keeper can cancel it (or cancels it at
    /// once when the keeper abandoned the runner before its task was kept).
    private func start(_ runner: Int, couponID: Int64) {
        let task = Task { await run(runner, couponID: couponID) }
        let kept = state.withLock { state in
            guard state.queues[couponID]?.runners[runner] != nil else { return false }
            state.queues[couponID]?.runners[runner]?.task = task
            return true
        }
        if !kept { task.cancel() }
    }

    /// Runs transactions for one coupon until nobody is waiting, or until the deadline keeper
    /// abandoned its transaction (and gave its place to a new runner).
    private func run(_ runner: Int, couponID: Int64) async {
        while let transaction = next(runner, couponID: couponID) {
            await runTransaction(transaction, runner: runner, couponID: couponID)
        }
    }

    /// The runner's next transaction, its deadline the oldest request's still within it (the one it
    /// takes first: the queue is in arrival order); nil when the runner was abandoned, or, the runner
    /// removed, when nobody waits.
    private func next(_ runner: Int, couponID: Int64) -> Transaction? {
        state.withLock { state in
            guard state.queues[couponID]?.runners[runner] != nil else { return nil }
            let now = clock.now
            guard let waiting = state.queues[couponID]?.waiting, !waiting.isEmpty else {
                state.queues[couponID]?.runners[runner] = nil
                if state.queues[couponID]?.runners.isEmpty == true { state.queues[couponID] = nil }
                return nil
            }
            let transaction = Transaction(oldest: waiting.first { !$0.hasWaited(timeout, by: now) }?.arrived ?? now)
            state.queues[couponID]?.runners[runner]?.transaction = transaction
            return transaction
        }
    }

    /// A connection, then the group, then the transaction; then the answers.
    private func runTransaction(_ transaction: Transaction, runner: Int, couponID: Int64) async {
        do {
            let answers = try await database.withConnection { [self] connection -> [String: TicketAnswer] in
                let userIDs = transaction.take { takeGroup(couponID: couponID, runner: runner) }
                guard !userIDs.isEmpty else { return [:] }
                return try await database.issue(couponID: couponID, userIDs: userIDs, on: connection)
            }
            answer(transaction.handBack(), with: answers)
        } catch {
            var failed = transaction.handBack()
            // It failed before it took its group: with the database down, the group it would have
            // taken fails with it, or those requests would wait for a connection nobody can get.
            // An abandoned runner takes nobody: its requests were answered at their deadline.
            if failed.isEmpty { failed = takeGroup(couponID: couponID, runner: runner) }
            for waiter in failed { waiter.continuation.resume(throwing: error) }
        }
    }

    /// Keeps every deadline while anything is pending: sleeps until the earliest, then answers what
    /// is due; ends when nothing is pending (the next request starts it again).
    private func keepDeadlines() async {
        while true {
            let earliest = state.withLock { state -> QueueClock.Instant? in
                let earliest = state.queues.values.lazy.flatMap { queue in
                    [queue.waiting.first?.arrived] + queue.runners.values.map { $0.transaction?.oldest }
                }.compactMap { $0 }.min()
                if earliest == nil { state.keeping = false }
                return earliest
            }
            guard let earliest else { return }
            try? await clock.sleep(until: earliest.advanced(by: timeout), tolerance: nil)
            expire()
        }
    }

    /// Answers 503 to the queued requests whose time is up, abandons the transactions whose oldest
    /// request's time is up, and starts a runner in the place of each abandoned one that has work.
    private func expire() {
        let now = clock.now
        var expired: [Waiter] = []
        var abandoned: [Runner] = []
        var replacements: [(runner: Int, couponID: Int64)] = []
        state.withLock { state in
            for couponID in Array(state.queues.keys) {
                // Taken out and put back: changed in place, no copy of its waiters.
                guard var queue = state.queues.removeValue(forKey: couponID) else { continue }
                let due = queue.waiting.prefix { $0.hasWaited(timeout, by: now) }.count
                expired += queue.waiting.prefix(due)
                queue.waiting.removeFirst(due)
                var freed = 0
                for (id, runner) in queue.runners where runner.transaction.map({ $0.oldest.duration(to: now) >= timeout }) == true {
                    abandoned.append(runner)
                    queue.runners[id] = nil
                    freed += 1
                }
                guard !queue.waiting.isEmpty || !queue.runners.isEmpty else { continue }
                let replaced = queue.waiting.isEmpty ? 0 : min(freed, maxTransactions - queue.runners.count)
                state.queues[couponID] = queue
                for _ in 0..<replaced { replacements.append((state.addRunner(couponID: couponID), couponID)) }
            }
        }
        for waiter in expired { waiter.continuation.resume(throwing: DeadlineExceeded()) }
        for runner in abandoned {
            for waiter in runner.transaction?.handBack() ?? [] { waiter.continuation.resume(throwing: DeadlineExceeded()) }
            runner.task?.cancel()
        }
        for (runner, couponID) in replacements { start(runner, couponID: couponID) }
    }

    /// Removes the next group from the queue, unless the deadline keeper abandoned the runner (then
    /// nobody: its place and the queue are its replacement's); answers those who waited too long.
    private func takeGroup(couponID: Int64, runner: Int) -> [Waiter] {
        let taken = state.withLock { state -> [Waiter] in
            guard state.queues[couponID]?.runners[runner] != nil else { return [] }
            return state.queues[couponID]?.take(upTo: maxGroupSize) ?? []
        }
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

    /// One transaction: the waiters it took, handed back exactly once, to be answered, or failed when
    /// the transaction failed or was abandoned at its deadline. Once handed back it takes nobody, so a
    /// transaction that overran and only then got a connection leaves no request without an answer.
    private final class Transaction: Sendable {
        /// The arrival of the oldest request still within its deadline when it began: its deadline
        /// is that request's.
        let oldest: QueueClock.Instant
        private struct State {
            var waiters: [Waiter] = []
            var handedBack = false
        }
        private let state = Mutex(State())

        init(oldest: QueueClock.Instant) { self.oldest = oldest }

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
