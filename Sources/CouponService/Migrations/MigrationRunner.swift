import Foundation
import Logging
import PostgresNIO

/// Applies migrations in order, each in its own transaction, recorded in `schema_migrations`.
///
/// A session advisory lock serializes runners, so instances starting together apply each file once.
public struct MigrationRunner: Sendable {
    public enum State: String, Sendable { case applied, pending, missingFile = "applied, file missing" }

    public struct Entry: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var state: State
        public var appliedAt: Date?
    }

    /// `hashtext('coupon-service schema_migrations')` would do too; a constant is easier to find in pg_locks.
    static let advisoryLockKey: Int64 = 0x436F_7570_6F6E_4D67

    public var migrations: [Migration]
    public var logger: Logger

    public init(migrations: [Migration], logger: Logger) {
        self.migrations = migrations
        self.logger = logger
    }

    /// Every known migration and whether it is applied; refuses when an applied file changed.
    public func status(on client: PostgresClient) async throws -> [Entry] {
        try await withLock(on: client) { connection in try await entries(on: connection) }
    }

    /// Applies what is pending (or, with `dryRun`, only lists it) and returns those migrations.
    @discardableResult
    public func apply(on client: PostgresClient, dryRun: Bool = false) async throws -> [Migration] {
        try await withLock(on: client) { connection in
            let pending = try await entries(on: connection).filter { $0.state == .pending }
                .compactMap { entry in migrations.first { $0.version == entry.version } }
            if dryRun { return pending }
            for migration in pending {
                try await Self.unwrappingFailedStatement { try await apply(migration, on: connection) }
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
            return pending
        }
    }

    /// `withTransaction` wraps what fails in `PostgresTransactionError`; a failed statement is
    /// reported as itself, the database's message first.
    private static func unwrappingFailedStatement(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as PostgresTransactionError {
            if let failed = error.closureError as? MigrationError { throw failed }
            throw error
        }
    }

    private func apply(_ migration: Migration, on connection: PostgresConnection) async throws {
        try await connection.withTransaction(logger: logger) { connection in
            let statements = SQLScript.statements(in: migration.sql)
            for (index, statement) in statements.enumerated() {
                do {
                    try await connection.execute(PostgresQuery(unsafeSQL: statement), logger: logger)
                } catch let error as PSQLError {
                    // The database's words first, then where: postgres-nio's own description
                    // starts by echoing the whole statement.
                    throw MigrationError.statementFailed(
                        file: migration.fileName, statement: index + 1, of: statements.count,
                        message: error.serverInfo?[.message] ?? String(describing: error.code),
                        sqlState: error.serverInfo?[.sqlState], sql: statement)
                }
            }
            try await connection.execute(
                """
                INSERT INTO schema_migrations (version, name, checksum)
                VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                """, logger: logger)
        }
    }

    private func entries(on connection: PostgresConnection) async throws -> [Entry] {
        var applied: [Int: (name: String, checksum: String, appliedAt: Date)] = [:]
        let rows = try await connection.query(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version", logger: logger)
        for try await (version, name, checksum, appliedAt) in rows.decode((Int, String, String, Date).self) {
            applied[version] = (name, checksum, appliedAt)
        }
        var entries: [Entry] = []
        for migration in migrations {
            if let record = applied.removeValue(forKey: migration.version) {
                guard record.checksum == migration.checksum else {
                    throw MigrationError.checksumChanged(
                        version: migration.version, name: migration.name, applied: record.checksum, file: migration.checksum)
                }
                entries.append(Entry(version: migration.version, name: migration.name, state: .applied, appliedAt: record.appliedAt))
            } else {
                entries.append(Entry(version: migration.version, name: migration.name, state: .pending))
            }
        }
        for (version, record) in applied {
            entries.append(Entry(version: version, name: record.name, state: .missingFile, appliedAt: record.appliedAt))
        }
        return entries.sorted { $0.version < $1.version }
    }

    private func withLock<T: Sendable>(
        on client: PostgresClient, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await client.withConnection { connection in
            try await connection.execute("SELECT pg_advisory_lock(\(Self.advisoryLockKey))", logger: logger)
            do {
                try await connection.execute(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    int PRIMARY KEY,
                        name       text NOT NULL,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                let result = try await body(connection)
                try await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                return result
            } catch {
                try? await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                throw error
            }
        }
    }
}
