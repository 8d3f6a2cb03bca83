@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Testing

/// The database a suite runs in: a migrated database of its own, made by the suite's
/// `.migratedDatabase` trait and dropped when the suite is done, so suites never see each other's
/// coupons or counters.
struct TestDatabase: Sendable {
    let url: String
    /// A pool the tests use to set up and audit, separate from the application's own pool.
    let client: PostgresClient

    @TaskLocal fileprivate static var scoped: TestDatabase?

    /// The running suite's database.
    static var current: TestDatabase {
        guard let scoped else { preconditionFailure("the suite needs the .migratedDatabase trait") }
        return scoped
    }
    static var url: String { current.url }
    static var client: PostgresClient { current.client }

    static let logger: Logger = {
        var logger = Logger(label: "coupon-tests")
        logger.logLevel = .warning
        return logger
    }()
    static let migrationsFolder = URL(filePath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "migrations", directoryHint: .isDirectory)

    /// Runs `body` with the URL of a new database of its own on the test command's PostgreSQL
    /// (migrated when asked), dropped afterwards: for suites, and for tests that migrate from scratch
    /// or count statements (pg_stat_statements counts per database).
    static func withScratchDatabase(migrated: Bool = false, _ body: (String) async throws -> Void) async throws {
        let name = "coupon_scratch_\(UInt32.random(in: 0...UInt32.max))"
        var url = URLComponents(string: TestDatabaseURL.server)!
        url.path = "/\(name)"
        try await onServer("CREATE DATABASE \(name)")
        do {
            if migrated {
                _ = try await withPostgresClient(databaseURL: url.string!, logger: logger) { scratch in
                    try await MigrationRunner(migrations: try Migration.load(from: migrationsFolder), logger: logger)
                        .apply(on: scratch)
                }
            }
            try await body(url.string!)
        } catch {
            try await onServer("DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
        try await onServer("DROP DATABASE \(name) WITH (FORCE)")
    }

    /// One statement on the test command's database; fails with a hint when no server is running.
    private static func onServer(_ sql: String) async throws {
        do {
            try await withPostgresClient(databaseURL: TestDatabaseURL.server, logger: logger) { server in
                _ = try await server.query(PostgresQuery(unsafeSQL: sql))
            }
        } catch {
            throw TestSetupError(
                "\(sql) on \(TestDatabaseURL.server): \(String(reflecting: error)). Run the tests with scripts/test.sh, which starts PostgreSQL.")
        }
    }

    /// Statements every session has run in one database so far, counted by pg_stat_statements as
    /// each finishes (pg_stat_database lags by up to ten seconds); only those whose normalized text is
    /// LIKE `matching` when given. Asked from the test command's own database, so the question is not
    /// counted in the answer.
    static func statementsRun(databaseURL: String, matching pattern: String = "%") async throws -> Int {
        let name = String(URLComponents(string: databaseURL)!.path.dropFirst())
        do {
            return try await withPostgresClient(databaseURL: TestDatabaseURL.server, logger: logger) { server in
                try await server.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                let rows = try await server.query(
                    """
                    SELECT coalesce(sum(s.calls), 0)::int FROM pg_stat_statements s
                    JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = \(name) AND s.query LIKE \(pattern)
                    """)
                for try await count in rows.decode(Int.self) { return count }
                return 0
            }
        } catch {
            throw TestSetupError(
                "pg_stat_statements is not available (\(String(reflecting: error))); scripts/test.sh preloads it")
        }
    }

    /// Creates a coupon straight in the database (the API has its own tests), as the service does:
    /// the one way tests make coupons.
    static func makeCoupon(
        quantity: Int, startsAt: Date? = nil, endsAt: Date? = nil, name: String = "test coupon", on client: PostgresClient = client
    ) async throws -> Int64 {
        try await CouponStore(database: .running(client))
            .create(name: name, quantity: quantity, startsAt: startsAt, endsAt: endsAt).id
    }

    /// Coupons of one name: a test counts those it may have created by the name it gives them, since
    /// the other tests of its suite create coupons at the same time.
    static func couponCount(named name: String) async throws -> Int {
        let rows = try await client.query("SELECT count(*)::int FROM coupons WHERE name = \(name)")
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    /// What the database says about a coupon, for the invariants every test checks: audit_coupon()
    /// (migrations/functions/audit_coupon.sql), the rules the bench and fault tools check too.
    struct Audit: Equatable, CustomStringConvertible {
        var quantity: Int
        var issuedCount: Int
        var ticketRows: Int
        var ticketsHeld: Int
        var distinctUsers: Int
        /// The rules the coupon breaks, in audit_coupon()'s words; empty when it keeps them all.
        var violations: [String] = []

        /// Nothing beyond the quantity, counter equals tickets held, no user holds two, one ticket row
        /// per ticket of the quantity.
        var isConsistent: Bool { violations.isEmpty }

        var description: String {
            "quantity \(quantity), counter \(issuedCount), rows \(ticketRows), held \(ticketsHeld), users \(distinctUsers)"
                + (violations.isEmpty ? "" : ": " + violations.joined(separator: "; "))
        }
    }

    static func audit(couponID: Int64, on client: PostgresClient = client) async throws -> Audit {
        let rows = try await client.query(
            "SELECT quantity, issued_count, ticket_rows, held, users, violations FROM audit_coupon(\(couponID))")
        for try await (quantity, issued, rowsCount, held, users, violations) in rows.decode((Int, Int, Int, Int, Int, [String]).self) {
            return Audit(
                quantity: quantity, issuedCount: issued, ticketRows: rowsCount, ticketsHeld: held, distinctUsers: users,
                violations: violations)
        }
        throw TestSetupError("coupon \(couponID) not found")
    }

    /// The code of the ticket a user holds, from the database (the test database unless another is named).
    static func heldCode(couponID: Int64, userID: String, databaseURL: String? = nil) async throws -> String? {
        func read(_ client: PostgresClient) async throws -> String? {
            let rows = try await client.query(
                "SELECT code FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id = \(userID)")
            for try await code in rows.decode(String.self) { return code }
            return nil
        }
        guard let databaseURL else { return try await read(client) }
        return try await withPostgresClient(databaseURL: databaseURL, logger: logger) { try await read($0) }
    }
}

/// Gives a suite (or a test) a migrated database of its own: `@Suite(.migratedDatabase)`. Its tests
/// reach it as `TestDatabase.current`, and `TestArguments()` points the application at it.
struct MigratedDatabase: SuiteTrait, TestTrait, TestScoping {
    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, maximumConnections: 40, logger: TestDatabase.logger) { client in
                try await TestDatabase.$scoped.withValue(TestDatabase(url: url, client: client)) {
                    try await TestDatabaseURL.$current.withValue(url, operation: function)
                }
            }
        }
    }
}

extension Trait where Self == MigratedDatabase {
    static var migratedDatabase: Self { MigratedDatabase() }
}

extension PrimaryDatabase {
    /// A pool the test already runs (on the running suite's database unless another is named), as the
    /// stores take it.
    static func running(_ client: PostgresClient, url: String = TestDatabase.url) -> PrimaryDatabase {
        // The test database's URL always reads.
        PrimaryDatabase(running: client, url: try! DatabaseURL(url), logger: TestDatabase.logger)
    }
}

extension Database {
    /// The stores' database on a pool the test already runs, with a deadline that a loaded machine meets.
    static func running(_ client: PostgresClient, url: String = TestDatabase.url) -> Database {
        Database(primary: .running(client, url: url), logger: TestDatabase.logger, timeout: .seconds(60))
    }
}
