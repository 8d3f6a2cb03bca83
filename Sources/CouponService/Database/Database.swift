import PostgresNIO
import Synchronization

/// Bounds how long a request waits for PostgreSQL, so an unreachable database means a prompt 503.
struct DatabaseGate: Sendable {
    let primary: PrimaryDatabase
    var client: PostgresClient { primary.client }
    /// For reads and issuance.
    let timeout: Duration
    /// For admin writes that generate ticket rows (millions take a while).
    let adminWriteTimeout: Duration
    /// How many admin writes may run at once, so they cannot take the pool from a sale.
    let adminWrites: AdminWriteSlots

    /// A read, or issuance, within the database deadline (`--database-timeout`).
    func withinDeadline<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withDeadline(timeout, operation)
    }

    /// An admin write: refused at once (`AdminWritesBusy`) when all its slots are taken, never queued;
    /// then reachability within the database deadline, so only real work gets the admin write's.
    func adminWrite<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard adminWrites.take() else { throw AdminWritesBusy(limit: adminWrites.limit) }
        defer { adminWrites.give() }
        try await ping()
        return try await withDeadline(adminWriteTimeout, operation)
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
