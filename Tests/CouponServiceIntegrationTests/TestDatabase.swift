@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO

/// The PostgreSQL the test command started (scripts/test.sh exports DATABASE_URL), migrated once.
enum TestDatabase {
    static let url = TestArguments.testDatabaseURL
    static let logger: Logger = {
        var logger = Logger(label: "coupon-tests")
        logger.logLevel = .warning
        return logger
    }()
    static let migrationsFolder = URL(filePath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "migrations", directoryHint: .isDirectory)

    /// A pool the tests use to set up and audit, separate from the application's own pool.
    static let client: PostgresClient = {
        var configuration = try! DatabaseURL(url).clientConfiguration(applicationName: "coupon-tests")
        configuration.options.maximumConnections = 40
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        Task { await client.run() }
        return client
    }()

    private static let migrated = Task {
        try await MigrationRunner(migrations: try Migration.load(from: migrationsFolder), logger: logger).apply(on: client)
    }

    /// The migrated database; fails with a hint when none is running.
    static func ready() async throws -> PostgresClient {
        do {
            _ = try await migrated.value
        } catch {
            throw TestSetupError(
                "cannot migrate \(url): \(String(reflecting: error)). Run the tests with scripts/test.sh, which starts PostgreSQL.")
        }
        return client
    }

    /// Runs `body` with the URL of a new, empty database of its own, dropped afterwards: for tests that
    /// migrate from scratch or count transactions (`pg_stat_database` counts per database).
    static func withScratchDatabase(migrated: Bool = false, _ body: (String) async throws -> Void) async throws {
        let client = try await ready()
        let name = "coupon_scratch_\(UInt32.random(in: 0...UInt32.max))"
        try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        var url = URLComponents(string: TestDatabase.url)!
        url.path = "/\(name)"
        do {
            if migrated {
                _ = try await withPostgresClient(databaseURL: url.string!, logger: logger) { scratch in
                    try await MigrationRunner(migrations: try Migration.load(from: migrationsFolder), logger: logger)
                        .apply(on: scratch)
                }
            }
            try await body(url.string!)
        } catch {
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
            throw error
        }
        try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
    }

    /// Statements every session has run in one database so far, counted by pg_stat_statements as
    /// each finishes (pg_stat_database lags by up to ten seconds). Asked from the test database, so the
    /// question is not counted in a scratch database's answer.
    static func statementsRun(databaseURL: String) async throws -> Int {
        let name = String(URLComponents(string: databaseURL)!.path.dropFirst())
        let client = try await ready()
        do {
            try await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            let rows = try await client.query(
                """
                SELECT coalesce(sum(s.calls), 0)::int FROM pg_stat_statements s
                JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = \(name)
                """)
            for try await count in rows.decode(Int.self) { return count }
        } catch {
            throw TestSetupError(
                "pg_stat_statements is not available (\(String(reflecting: error))); scripts/test.sh preloads it")
        }
        return 0
    }

    /// Creates a coupon straight in the database (the API has its own tests).
    static func makeCoupon(quantity: Int, startsAt: Date? = nil, endsAt: Date? = nil) async throws -> Int64 {
        let client = try await ready()
        return try await CouponStore(client: client, logger: logger)
            .create(name: "test coupon", quantity: quantity, startsAt: startsAt, endsAt: endsAt).id
    }

    /// What the database says about a coupon, for the invariants every test checks.
    struct Audit: Equatable, CustomStringConvertible {
        var quantity: Int
        var issuedCount: Int
        var ticketRows: Int
        var ticketsHeld: Int
        var distinctUsers: Int

        /// Counter equals tickets held, no user holds two, nothing beyond the quantity.
        var isConsistent: Bool {
            issuedCount == ticketsHeld && ticketsHeld == distinctUsers && ticketsHeld <= quantity && ticketRows == quantity
        }

        var description: String {
            "quantity \(quantity), counter \(issuedCount), rows \(ticketRows), held \(ticketsHeld), users \(distinctUsers)"
        }
    }

    static func audit(couponID: Int64, on client: PostgresClient = client) async throws -> Audit {
        let rows = try await client.query(
            """
            SELECT c.quantity, c.issued_count, count(t.number)::int, count(t.user_id)::int, count(DISTINCT t.user_id)::int
            FROM coupons c LEFT JOIN coupon_tickets t ON t.coupon_id = c.id
            WHERE c.id = \(couponID) GROUP BY c.id
            """)
        for try await (quantity, issued, rowsCount, held, users) in rows.decode((Int, Int, Int, Int, Int).self) {
            return Audit(quantity: quantity, issuedCount: issued, ticketRows: rowsCount, ticketsHeld: held, distinctUsers: users)
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
