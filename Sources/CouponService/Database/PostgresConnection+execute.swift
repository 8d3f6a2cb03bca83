import Logging
import PostgresNIO

extension PostgresConnection {
    /// Runs a statement whose rows are not wanted, to its end. postgres-nio returns from `query` once
    /// PostgreSQL has described the rows; an error raised while the statement runs (a function that
    /// fails, say) arrives with the rows, so a result nobody reads would hide it, and the COMMIT after
    /// it would quietly be a ROLLBACK.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}
