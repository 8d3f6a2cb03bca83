import PostgresNIO

/// Bounds how long a request waits for PostgreSQL, so an unreachable database means a prompt 503.
struct DatabaseGate: Sendable {
    let client: PostgresClient
    /// For reads and issuance.
    let timeout: Duration
    /// For admin writes that generate ticket rows (millions take a while).
    let longTimeout: Duration

    func short<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withDeadline(timeout, operation)
    }

    /// Checks reachability within the short deadline first, so only real work gets the long one.
    func long<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await ping()
        return try await withDeadline(longTimeout, operation)
    }

    func ping() async throws {
        try await withDeadline(timeout) { [client] in
            for try await _ in try await client.query("SELECT 1") {}
        }
    }
}
