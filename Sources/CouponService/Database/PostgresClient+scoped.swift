import Logging
import PostgresNIO

/// Runs `body` with a running pool for `databaseURL`, and shuts the pool down afterwards.
/// For commands and tests; the server runs its pool as a service instead.
@discardableResult
public func withPostgresClient<T: Sendable>(
    databaseURL: String, logger: Logger, _ body: (PostgresClient) async throws -> T
) async throws -> T {
    let client = PostgresClient(configuration: try DatabaseURL(databaseURL).clientConfiguration(), backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}
