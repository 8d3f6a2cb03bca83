import Foundation
import Logging
import PostgresNIO

/// Applies migrations, each in its own transaction (unless the file says `-- migrate: no-transaction`):
/// the pending versioned ones in order, recorded in `schema_migrations`, then the repeatable ones whose
/// text changed, recorded in `schema_functions`.
///
/// A session advisory lock serializes runners, so instances starting together apply each file once.
/// Every statement waits at most `lockTimeout` for a table's lock: a migration behind a long
/// transaction fails, and can be run again, instead of queueing a sale's issuance behind its wait.
public struct MigrationRunner: Sendable {
    public enum State: String, Sendable { case applied, pending, missingFile = "applied, file missing" }

    public struct Entry: Sendable, Equatable {
        /// Nil for a repeatable migration.
        public var version: Int?
        public var name: String
        public var state: State
        public var appliedAt: Date?

        public var label: String { Migration.label(version: version, name: name) }
    }

    /// `hashtext('coupon-service schema_migrations')` would do too; a constant is easier to find in pg_locks.
    static let advisoryLockKey: Int64 = 0x436F_7570_6F6E_4D67

    /// Versioned migrations in version order, then repeatable ones, as `Migration.load` gives them.
    public var migrations: [Migration]
    public var logger: Logger
    /// PostgreSQL's `lock_timeout` for the migrations' statements.
    public var lockTimeout: Duration

    public init(migrations: [Migration], lockTimeout: Duration = .seconds(5), logger: Logger) {
        self.migrations = migrations
        self.lockTimeout = lockTimeout
        self.logger = logger
    }

    /// Every known migration and whether it is applied; refuses when an applied versioned file changed.
    public func status(on client: PostgresClient) async throws -> [Entry] {
        try await withLock(on: client) { connection in try await entries(on: connection) }
    }

    /// Applies what is pending (or, with `dryRun`, only lists it) and returns those migrations.
    @discardableResult
    public func apply(on client: PostgresClient, dryRun: Bool = false) async throws -> [Migration] {
        try await withLock(on: client) { connection in
            let entries = try await entries(on: connection)
            // An older release during a rolling upgrade would put its older function texts back.
            let known = migrations.compactMap(\.version).max() ?? 0
            if let newer = entries.first(where: { $0.state == .missingFile && ($0.version ?? 0) > known }) {
                throw MigrationError.databaseIsNewer(newer.label, known: known)
            }
            let pending = entries.filter { $0.state == .pending }
                .compactMap { entry in migrations.first { $0.version == entry.version && $0.name == entry.name } }
            if dryRun { return pending }
            for migration in pending {
                try await Self.unwrappingFailedStatement { try await apply(migration, on: connection) }
                logger.info("applied migration", metadata: ["migration": "\(migration.label)"])
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
        guard migration.runsInTransaction else {
            // Each statement commits on its own, the record last: a file that stops halfway stays
            // pending and runs again whole, which its IF NOT EXISTS allow.
            try await run(migration, on: connection, buildingIndexesConcurrently: true)
            return try await record(migration, on: connection)
        }
        try await connection.withTransaction(logger: logger) { connection in
            try await run(migration, on: connection)
            try await record(migration, on: connection)
        }
    }

    private func run(_ migration: Migration, on connection: PostgresConnection, buildingIndexesConcurrently: Bool = false) async throws {
        let statements = SQLScript.statements(in: migration.sql)
        for (index, statement) in statements.enumerated() {
            if buildingIndexesConcurrently, let name = Migration.concurrentIndex(builtBy: statement),
               try await indexIsBuilt(name, on: connection) {
                // There already: not built again. (Citus marks an existing index invalid on the coordinator
                // for `CREATE INDEX CONCURRENTLY IF NOT EXISTS` all the same, citusdata/citus#8338.)
                continue
            }
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
    }

    private func record(_ migration: Migration, on connection: PostgresConnection) async throws {
        if let version = migration.version {
            try await connection.execute(
                """
                INSERT INTO schema_migrations (version, name, checksum)
                VALUES (\(version), \(migration.name), \(migration.checksum))
                """, logger: logger)
        } else {
            try await connection.execute(
                """
                INSERT INTO schema_functions (name, checksum) VALUES (\(migration.name), \(migration.checksum))
                ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()
                """, logger: logger)
        }
    }

    /// Whether the index is there and valid. A failed `CREATE INDEX CONCURRENTLY` leaves its index
    /// behind, invalid (never used by a plan, still written by every change): dropped, so the
    /// statement builds it again.
    private func indexIsBuilt(_ name: String, on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(\(name))", logger: logger)
        var valid: Bool?
        for try await found in rows.decode(Bool.self) { valid = found }
        guard valid == false else { return valid == true }
        logger.warning("dropping an index a failed concurrent build left invalid", metadata: ["index": "\(name)"])
        try await connection.execute(PostgresQuery(unsafeSQL: "DROP INDEX CONCURRENTLY IF EXISTS \"\(name)\""), logger: logger)
        return false
    }

    private func entries(on connection: PostgresConnection) async throws -> [Entry] {
        typealias Record = (checksum: String, appliedAt: Date)
        var versions: [Int: (name: String, record: Record)] = [:]
        let versionRows = try await connection.query(
            "SELECT version, name, checksum, applied_at FROM schema_migrations", logger: logger)
        for try await (version, name, checksum, appliedAt) in versionRows.decode((Int, String, String, Date).self) {
            versions[version] = (name, (checksum, appliedAt))
        }
        var functions: [String: Record] = [:]
        let functionRows = try await connection.query("SELECT name, checksum, applied_at FROM schema_functions", logger: logger)
        for try await (name, checksum, appliedAt) in functionRows.decode((String, String, Date).self) {
            functions[name] = (checksum, appliedAt)
        }

        var entries: [Entry] = []
        for migration in migrations {
            guard let version = migration.version else {
                let record = functions.removeValue(forKey: migration.name)
                let current = record?.checksum == migration.checksum
                entries.append(Entry(version: nil, name: migration.name, state: current ? .applied : .pending, appliedAt: record?.appliedAt))
                continue
            }
            guard let (_, record) = versions.removeValue(forKey: version) else {
                entries.append(Entry(version: version, name: migration.name, state: .pending))
                continue
            }
            guard record.checksum == migration.checksum || Migration.isFormerChecksum(record.checksum, ofVersion: version) else {
                throw MigrationError.checksumChanged(
                    version: version, name: migration.name, applied: record.checksum, file: migration.checksum)
            }
            entries.append(Entry(version: version, name: migration.name, state: .applied, appliedAt: record.appliedAt))
        }
        for (version, (name, record)) in versions where !Migration.isFormerChecksum(record.checksum, ofVersion: version) {
            entries.append(Entry(version: version, name: name, state: .missingFile, appliedAt: record.appliedAt))
        }
        for (name, record) in functions {
            entries.append(Entry(version: nil, name: name, state: .missingFile, appliedAt: record.appliedAt))
        }
        let versioned = entries.filter { $0.version != nil }.sorted { $0.version! < $1.version! }
        return versioned + entries.filter { $0.version == nil }.sorted { $0.name < $1.name }
    }

    private func withLock<T: Sendable>(
        on client: PostgresClient, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await client.withConnection { connection in
            // Tried, not waited for: a session waiting in pg_advisory_lock is a transaction that
            // another runner's CREATE INDEX CONCURRENTLY would wait for in turn (a deadlock).
            while try await !connection.query("SELECT pg_try_advisory_lock(\(Self.advisoryLockKey))", logger: logger)
                .decode(Bool.self).reduce(false, { $0 || $1 }) {
                try await Task.sleep(for: .milliseconds(100))
            }
            do {
                // After the advisory lock, for which a runner waits as long as another runs.
                let milliseconds = lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000
                try await connection.execute(PostgresQuery(unsafeSQL: "SET lock_timeout = \(milliseconds)"), logger: logger)
                try await connection.execute(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    int PRIMARY KEY,
                        name       text NOT NULL,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                try await connection.execute(
                    """
                    CREATE TABLE IF NOT EXISTS schema_functions (
                        name       text PRIMARY KEY,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                let result = try await body(connection)
                try await connection.execute("RESET lock_timeout", logger: logger)
                try await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                return result
            } catch {
                try? await connection.execute("RESET lock_timeout", logger: logger)
                try? await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))", logger: logger)
                throw error
            }
        }
    }
}
