import Logging
import PostgresNIO

/// Runs `body` with a running pool for `databaseURL` (on its first host that `target_session_attrs`
/// wants), and shuts the pool down afterwards. For commands and tests; the server runs its pools as
/// a service instead (`PrimaryDatabase`).
@discardableResult
public func withPostgresClient<T: Sendable>(
    databaseURL: String, maximumConnections: Int = 20, logger: Logger, _ body: (PostgresClient) async throws -> T
) async throws -> T {
    let url = try DatabaseURL(databaseURL)
    var configuration = url.on(try await PrimaryDatabase.firstWanted(in: url, logger: logger)).clientConfiguration()
    configuration.options.maximumConnections = maximumConnections
    let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        // The body waits until run() is being called, so its first lease does not log "run() hasn't
        // been called yet" (run() marks the client running as its first step).
        await withCheckedContinuation { started in
            group.addTask {
                started.resume()
                await client.run()
            }
        }
        defer { group.cancelAll() }
        return try await body(client)
    }
}
