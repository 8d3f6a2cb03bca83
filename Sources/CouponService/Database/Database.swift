import Logging
import PostgresNIO
import Synchronization

/// The database as every store sees it: the current primary (`PrimaryDatabase`), and the deadlines
/// every statement runs under, so an unreachable database means a prompt 503. The deadline is applied
/// here alone: to a read or a ticket function (`rows`), to an admin write (`adminWrite`) and to a ping;
/// issuance's transactions wait under the queue's (`IssuanceQueue`).
struct Database: Sendable {
    let primary: PrimaryDatabase
    let logger: Logger
    /// For reads, ticket functions and issuance (`--database-timeout`).
    let timeout: Duration
    /// For admin writes that generate ticket rows (millions take a while).
    let adminWriteTimeout: Duration
    /// How many admin writes may run at once, so they cannot take the pool from a sale.
    let adminWrites: AdminWriteSlots
    /// Rung by every store whose change wrote events (`eventsCommitted()`), for the feed's readers.
    let bell: EventBell

    init(
        primary: PrimaryDatabase, logger: Logger, timeout: Duration, adminWriteTimeout: Duration = .seconds(300),
        adminWrites: AdminWriteSlots = AdminWriteSlots(limit: 1), bell: EventBell = EventBell()
    ) {
        self.primary = primary
        self.logger = logger
        self.timeout = timeout
        self.adminWriteTimeout = adminWriteTimeout
        self.adminWrites = adminWrites
        self.bell = bell
    }

    /// A transaction that wrote events committed: the feed's readers here and on every instance wake.
    func eventsCommitted() {
        bell.ring { [self] in _ = try? await rows("SELECT pg_notify(\(EventBell.channel), '')") { _ in () } }
    }

    var client: PostgresClient { primary.client }

    /// The rows of one statement, each made by `row`, within the deadline.
    func rows<Row: Sendable>(
        _ query: PostgresQuery, _ row: @escaping @Sendable (PostgresRow) throws -> Row
    ) async throws -> [Row] {
        let (client, logger) = (client, logger)
        return try await withDeadline(timeout) {
            var rows: [Row] = []
            for try await found in try await client.query(query, logger: logger) { rows.append(try row(found)) }
            return rows
        }
    }

    /// An admin write: refused at once (`AdminWritesBusy`) when all its slots are taken, never queued;
    /// then reachability within the database deadline, so only real work gets the admin write's.
    func adminWrite<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard adminWrites.take() else { throw AdminWritesBusy(limit: adminWrites.limit) }
        defer { adminWrites.give() }
        try await ping()
        return try await withDeadline(adminWriteTimeout, operation)
    }

    /// An admin write in one transaction.
    func adminTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let (client, logger) = (client, logger)
        return try await adminWrite { try await client.withTransaction(logger: logger) { try await body($0) } }
    }

    /// The standbys that confirm the primary's commits (in `pg_stat_replication`, `sync` or `quorum`):
    /// nil unless the URL asks for a writer (`target_session_attrs`), the sign of a replicated setup.
    /// 0 there means an acknowledged ticket is on one host only. The role needs `pg_monitor` to see
    /// the standbys' rows.
    func synchronousStandbys() async throws -> Int? {
        guard primary.url.targetSessionAttrs != .any else { return nil }
        return try await rows("SELECT count(*)::int FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')") {
            try $0.decode(Int.self)
        }.first
    }

    func ping() async throws {
        let client = client
        try await withDeadline(timeout) {
            for try await _ in try await client.query("SELECT 1") {}
        }
    }
}

/// All admin write slots are taken (503 `admin_busy`).
struct AdminWritesBusy: Error {
    let limit: Int
}

/// A count of admin writes running, at most `limit`.
final class AdminWriteSlots: Sendable {
    let limit: Int
    private let running = Mutex(0)

    init(limit: Int) { self.limit = limit }

    func take() -> Bool {
        running.withLock { running in
            guard running < limit else { return false }
            running += 1
            return true
        }
    }

    func give() { running.withLock { $0 -= 1 } }
}

/// The database did not answer within the deadline.
struct DeadlineExceeded: Error {}

/// Runs `operation` and gives up after `timeout` on `clock`.
///
/// The operation is not awaited past the deadline: a query stuck on a dead connection or a pool
/// waiting for a database that is down must not hold an HTTP answer hostage. A late operation still
/// finishes in the background; an issuance that commits late is found again by the user's retry.
func withDeadline<T: Sendable, C: Clock<Duration>>(
    _ timeout: Duration, clock: C = ContinuousClock(), _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withCheckedThrowingContinuation { continuation in
        race.start(continuation)
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            race.finish(with: result)
        }
        race.arm(Task {
            guard (try? await clock.sleep(until: clock.now.advanced(by: timeout), tolerance: nil)) != nil else { return }
            if race.finish(with: .failure(DeadlineExceeded())) { work.cancel() }
        })
    }
}

/// Whoever finishes first, the work or the timer, answers; the other is told it lost.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var timer: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Keeps the timer so that the work can stop it; stops it at once when the work already answered.
    func arm(_ timer: Task<Void, Never>) {
        let answered = state.withLock { state in
            state.timer = timer
            return state.continuation == nil
        }
        if answered { timer.cancel() }
    }

    @discardableResult
    func finish(with result: Result<T, any Error>) -> Bool {
        let (continuation, timer) = state.withLock { state in
            defer { state.continuation = nil }
            return (state.continuation, state.timer)
        }
        guard let continuation else { return false }
        timer?.cancel()
        continuation.resume(with: result)
        return true
    }
}
