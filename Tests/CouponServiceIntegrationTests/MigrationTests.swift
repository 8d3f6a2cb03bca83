@testable import CouponService
import CouponTestSupport
import Foundation
import PostgresNIO
import Testing

/// Each test runs the migration runner against a database of its own.
@Suite(.migratedDatabase) struct MigrationTests {
    func scratchFolder(_ files: [String: String]) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appending(path: "migrations-\(UUID())", directoryHint: .isDirectory)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (name, sql) in files { try sql.write(to: folder.appending(path: name), atomically: true, encoding: .utf8) }
        return folder
    }

    func runner(_ folder: URL) throws -> MigrationRunner {
        MigrationRunner(migrations: try Migration.load(from: folder), logger: TestDatabase.logger)
    }

    /// The binary carries migrations/ as it is (the EmbeddedMigrations plugin): `migrate` needs no checkout.
    @Test func theBinaryCarriesTheMigrationsFolder() throws {
        let embedded = try Migration.embedded()
        #expect(embedded == (try Migration.load(from: TestDatabase.migrationsFolder)))
        #expect(embedded.contains { $0.fileName == "0001_coupons.sql" })
        #expect(embedded.contains { $0.fileName == "functions/issue_tickets.sql" })
    }

    @Test func theProjectMigrationsApplyOnceThenDoNothing() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let runner = try runner(TestDatabase.migrationsFolder)
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                #expect(try await runner.apply(on: client, dryRun: true).map(\.version) == runner.migrations.map(\.version))
                #expect(try await runner.status(on: client).allSatisfy { $0.state == .pending })
                #expect(try await runner.apply(on: client).count == runner.migrations.count)
                #expect(try await runner.apply(on: client).isEmpty)
                #expect(try await runner.status(on: client).allSatisfy { $0.state == .applied })
                let rows = try await client.query("SELECT (SELECT count(*)::int FROM schema_migrations), (SELECT count(*)::int FROM schema_functions)")
                for try await (versioned, repeatable) in rows.decode((Int, Int).self) {
                    #expect(versioned == runner.migrations.count { $0.version != nil })
                    #expect(repeatable == runner.migrations.count { $0.version == nil })
                    #expect(repeatable > 0, "the functions live in migrations/functions")
                }
            }
        }
    }

    @Test func runnersStartingTogetherApplyEachFileOnce() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let runner = try runner(TestDatabase.migrationsFolder)
            let applied = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                            try await runner.apply(on: client).count
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(applied == runner.migrations.count)
        }
    }

    @Test func aChangedAppliedMigrationIsRefused() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let folder = try scratchFolder(["0001_first.sql": "CREATE TABLE first (x int);"])
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                try await runner(folder).apply(on: client)
                try "CREATE TABLE first (x bigint);".write(to: folder.appending(path: "0001_first.sql"), atomically: true, encoding: .utf8)
                try "CREATE TABLE second (x int);".write(to: folder.appending(path: "0002_second.sql"), atomically: true, encoding: .utf8)
                await #expect {
                    try await runner(folder).apply(on: client)
                } throws: { error in
                    guard case .checksumChanged(1, "first", _, _) = error as? MigrationError else { return false }
                    return "\(error)".contains("must not change")
                }
                let rows = try await client.query("SELECT to_regclass('second') IS NULL")
                for try await missing in rows.decode(Bool.self) { #expect(missing, "nothing after the refusal ran") }
            }
        }
    }

    @Test func aFailingMigrationLeavesNoTrace() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let folder = try scratchFolder([
                "0001_good.sql": "CREATE TABLE good (x int);",
                "0002_bad.sql": "CREATE TABLE half (x int); SELECT no_such_function();",
            ])
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                let error = await #expect(throws: MigrationError.self) { try await runner(folder).apply(on: client) }
                guard case .statementFailed(let file, let statement, let count, let message, let sqlState, _)? = error else {
                    Issue.record("not a failed statement: \(String(describing: error))")
                    return
                }
                #expect(file == "0002_bad.sql" && statement == 2 && count == 2 && sqlState == "42883")
                #expect(message.contains("no_such_function"), "the database's own words: \(message)")
                #expect(String(describing: error!).hasPrefix("0002_bad.sql, statement 2 of 2: "), "the error comes first")
                let states = try await runner(folder).status(on: client).map(\.state)
                #expect(states == [.applied, .pending])
                let rows = try await client.query("SELECT to_regclass('half') IS NULL")
                for try await missing in rows.decode(Bool.self) { #expect(missing, "the failed file rolled back whole") }
            }
        }
    }

    /// A `-- migrate: no-transaction` file runs each statement on its own (CREATE INDEX CONCURRENTLY
    /// refuses a transaction block); one that fails stays pending, and the invalid index its failed
    /// build left is dropped and built again on the next run, instead of `IF NOT EXISTS` keeping it.
    @Test func aConcurrentIndexBuildsOutsideATransactionAndAgainAfterItFailed() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let folder = try scratchFolder([
                "0001_table.sql": "CREATE TABLE codes (code int); INSERT INTO codes VALUES (1), (1), (2);",
                "0002_index.sql": """
                    -- migrate: no-transaction
                    CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS codes_once ON codes (code);
                    """,
            ])
            #expect(try runner(folder).migrations.map(\.runsInTransaction) == [true, false])
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                func indexIsValid() async throws -> Bool? {
                    let rows = try await client.query("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('codes_once')")
                    for try await valid in rows.decode(Bool.self) { return valid }
                    return nil
                }
                let error = await #expect(throws: MigrationError.self) { try await runner(folder).apply(on: client) }
                guard case .statementFailed(let file, _, _, _, let sqlState, _)? = error else {
                    Issue.record("not a failed statement: \(String(describing: error))")
                    return
                }
                #expect(file == "0002_index.sql" && sqlState == "23505")
                #expect(try await runner(folder).status(on: client).map(\.state) == [.applied, .pending])
                #expect(try await indexIsValid() == false, "a failed concurrent build leaves its index, invalid")

                try await client.query("DELETE FROM codes WHERE ctid = (SELECT max(ctid) FROM codes WHERE code = 1)")
                #expect(try await runner(folder).apply(on: client).map(\.label) == ["0002 index"])
                #expect(try await indexIsValid() == true, "built again, not kept invalid by IF NOT EXISTS")

                // An index already there and valid is not built again: the statement is skipped, not
                // sent (it would wait for the table's lock; on Citus it marks the index invalid).
                try FileManager.default.copyItem(at: folder.appending(path: "0002_index.sql"), to: folder.appending(path: "0003_again.sql"))
                var again = try runner(folder)
                again.lockTimeout = .milliseconds(300)
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { other in
                    try await other.withConnection { holder in
                        try await holder.query("BEGIN", logger: TestDatabase.logger)
                        try await holder.query("LOCK TABLE codes IN SHARE UPDATE EXCLUSIVE MODE", logger: TestDatabase.logger)
                        #expect(try await again.apply(on: client).map(\.label) == ["0003 again"])
                        try await holder.query("ROLLBACK", logger: TestDatabase.logger)
                    }
                }
                #expect(try await indexIsValid() == true)
            }
        }
    }

    /// A migration behind a long transaction on the same table fails after the lock timeout, and can run
    /// again, instead of waiting with every write to the table queued behind it.
    @Test func aMigrationBehindALongTransactionGivesUpInsteadOfQueueingIssuance() async throws {
        let project = try runner(TestDatabase.migrationsFolder)
        var runner = project
        runner.migrations.insert(Migration(version: 99, name: "late_column", sql: "ALTER TABLE coupon_tickets ADD COLUMN late int;"),
                                 at: project.migrations.firstIndex { $0.version == nil }!)
        runner.lockTimeout = .milliseconds(300)
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                let coupon = try await TestDatabase.makeCoupon(quantity: 3, on: client)
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { reader in
                    try await reader.withConnection { long in
                        try await long.query("BEGIN", logger: TestDatabase.logger)
                        try await long.query("SELECT count(*) FROM coupon_tickets", logger: TestDatabase.logger)
                        let error = await #expect(throws: MigrationError.self) { try await runner.apply(on: client) }
                        guard case .statementFailed(let file, _, _, _, let sqlState, _)? = error else {
                            Issue.record("not a failed statement: \(String(describing: error))")
                            return
                        }
                        #expect(file == "0099_late_column.sql" && sqlState == "55P03", "lock_timeout")
                        try await long.query("ROLLBACK", logger: TestDatabase.logger)
                    }
                }
                try await client.query("SELECT * FROM issue_tickets(\(coupon), ARRAY['ann'])")
                #expect(try await runner.apply(on: client).map(\.label) == ["0099 late_column"], "run again once the way is free")
            }
        }
    }

    /// An older release's `migrate` on a database a newer one migrated applies nothing (it would put
    /// its older function texts back during a rolling upgrade) and says which release to run.
    @Test func anOlderReleaseDoesNotMigrateANewerDatabase() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let newer = try scratchFolder(["0001_first.sql": "CREATE TABLE first (x int);", "0002_second.sql": "CREATE TABLE second (x int);"])
            try FileManager.default.createDirectory(at: newer.appending(path: "functions"), withIntermediateDirectories: true)
            try "CREATE OR REPLACE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 2';"
                .write(to: newer.appending(path: "functions/answer.sql"), atomically: true, encoding: .utf8)
            let older = try scratchFolder(["0001_first.sql": "CREATE TABLE first (x int);"])
            try FileManager.default.createDirectory(at: older.appending(path: "functions"), withIntermediateDirectories: true)
            try "CREATE OR REPLACE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 1';"
                .write(to: older.appending(path: "functions/answer.sql"), atomically: true, encoding: .utf8)
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                try await runner(newer).apply(on: client)
                await #expect(throws: MigrationError.databaseIsNewer("0002 second", known: 1)) { try await runner(older).apply(on: client) }
                for try await answer in try await client.query("SELECT answer()").decode(Int.self) {
                    #expect(answer == 2, "the newer function stays")
                }
            }
        }
    }

    @Test func badFileNamesAreRefused() throws {
        let folder = try scratchFolder(["first.sql": "SELECT 1;"])
        #expect(throws: MigrationError.badFileName("first.sql")) { try Migration.load(from: folder) }
    }

    /// A function file is applied after the versioned ones, again whenever its text changes, and not
    /// otherwise; a failing one rolls back whole, its record untouched.
    @Test func aChangedFunctionFileIsAppliedAgain() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let folder = try scratchFolder(["0001_first.sql": "CREATE TABLE first (x int);"])
            let functions = folder.appending(path: "functions", directoryHint: .isDirectory)
            try FileManager.default.createDirectory(at: functions, withIntermediateDirectories: true)
            func write(_ body: String) throws {
                try "CREATE OR REPLACE FUNCTION answer() RETURNS int LANGUAGE sql AS $$ \(body) $$;"
                    .write(to: functions.appending(path: "answer.sql"), atomically: true, encoding: .utf8)
            }
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                func answer() async throws -> Int? {
                    for try await value in try await client.query("SELECT answer()").decode(Int.self) { return value }
                    return nil
                }
                try write("SELECT count(*)::int FROM first")
                #expect(try await runner(folder).apply(on: client).map(\.label) == ["0001 first", "functions/answer"])
                #expect(try await runner(folder).apply(on: client).isEmpty, "unchanged: not applied again")
                try write("SELECT 42")
                #expect(try await runner(folder).status(on: client).map(\.state) == [.applied, .pending])
                #expect(try await runner(folder).apply(on: client).map(\.label) == ["functions/answer"])
                #expect(try await answer() == 42)
                try write("SELECT no_such_column FROM first")
                await #expect(throws: MigrationError.self) { try await runner(folder).apply(on: client) }
                #expect(try await answer() == 42, "the failed text rolled back")
                #expect(try await runner(folder).status(on: client).map(\.state) == [.applied, .pending])
            }
        }
    }

    /// The migrations folder as it was until 2026-12-04 (commit c97bcd0), every function in the
    /// versioned files: what databases migrated until then recorded. Frozen test data, kept in
    /// Tests/Fixtures so the test needs no git history.
    static let folderBeforeFunctionsMoved = TestDatabase.migrationsFolder.deletingLastPathComponent()
        .appending(path: "Tests/Fixtures/migrations-before-functions-moved", directoryHint: .isDirectory)

    /// A database at the schema of before (nine versioned files, with a sale in it) upgrades to
    /// today's layout: nothing versioned of before runs again (what came after does), the functions are applied from their files, the
    /// records of before stay as they were, the tickets stay, and the schema is the one a fresh database gets.
    @Test func aDatabaseMigratedBeforeTheFunctionsMovedUpgrades() async throws {
        let old = try runner(Self.folderBeforeFunctionsMoved)
        #expect(old.migrations.count == 9)
        for migration in old.migrations {
            #expect(Migration.isFormerChecksum(migration.checksum, ofVersion: migration.version!), "\(migration.fileName)")
        }
        let now = try runner(TestDatabase.migrationsFolder)
        try await TestDatabase.withScratchDatabase(migrated: true) { freshURL in
            try await TestDatabase.withScratchDatabase { url in
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                    try await old.apply(on: client)
                    let coupon = try await TestDatabase.makeCoupon(quantity: 5, on: client)
                    try await client.query("SELECT * FROM issue_tickets(\(coupon), ARRAY['ann', 'bob', 'cid'])")
                    try await client.query("SELECT * FROM redeem_ticket(\(coupon), 'ann', 'order-1')")

                    let applied = try await now.apply(on: client)
                    let newer = now.migrations.filter { ($0.version ?? .max) > old.migrations.compactMap(\.version).max()! }
                    #expect(applied.map(\.label) == newer.map(\.label), "nothing versioned of before runs again")
                    #expect(try await now.status(on: client).allSatisfy { $0.state == .applied })
                    #expect(try await Self.recorded(on: client) == Self.records(of: old.migrations + newer), "the records of before are kept as they were")

                    let audit = try await TestDatabase.audit(couponID: coupon, on: client)
                    #expect(audit.isConsistent && audit.ticketsHeld == 3, "\(audit)")
                    // A code handed out before codes carried their coupon still finds its ticket.
                    var bobs: String?
                    for try await code in try await client.query(
                        "SELECT code FROM coupon_tickets WHERE coupon_id = \(coupon) AND user_id = 'bob'").decode(String.self) { bobs = code }
                    let bare = try #require(bobs.flatMap(TicketStore.Code.init))
                    #expect(bare == .bare(bobs!), "a code of before is the hex digits alone")
                    let tickets = TicketStore(database: .running(client, url: url), metrics: CouponMetrics())
                    let found = try await tickets.record(try #require(try await tickets.key(of: bare, holder: nil)))
                    #expect(found?.ticket.userID == "bob" && found?.state == .issued)
                    func outcomes(_ query: PostgresQuery) async throws -> [String] {
                        var outcomes: [String] = []
                        for try await outcome in try await client.query(query).decode(String.self) { outcomes.append(outcome) }
                        return outcomes.sorted()
                    }
                    #expect(try await outcomes("SELECT outcome FROM issue_tickets(\(coupon), ARRAY['bob', 'dan'])") == ["already_issued", "issued"])
                    #expect(
                        try await outcomes("SELECT outcome FROM restore_ticket(\(coupon), 'ann', NULL, 'order-1')") == ["restored"],
                        "the redemption made before the upgrade is undone by today's function")
                }
                let difference = SchemaDocumentTests.firstDifference(try SchemaDocumentTests.schema(of: url), try SchemaDocumentTests.schema(of: freshURL))
                #expect(difference == nil, "the upgraded schema differs from a fresh one at \(difference ?? "")")
            }
        }
    }

    /// 0010 as first written (2026-12-04), its five changes in one ALTER TABLE, which Citus refuses:
    /// what databases on plain PostgreSQL ran until 2026-12-07. Frozen test data.
    static let checkoutByCodeInOneStatement = TestDatabase.migrationsFolder.deletingLastPathComponent()
        .appending(path: "Tests/Fixtures/migrations-before-citus-split/0010_checkout_by_code.sql")

    /// A database that ran 0010 in one statement keeps its record: nothing runs again, nothing is
    /// refused, the record still holds the checksum it ran, and the schema is a fresh database's.
    @Test func aDatabaseThatRan0010InOneStatementKeepsItsRecord() async throws {
        let now = try runner(TestDatabase.migrationsFolder)
        var before = now
        let index = try #require(before.migrations.firstIndex { $0.version == 10 })
        before.migrations[index] = Migration(
            version: 10, name: before.migrations[index].name, sql: try String(contentsOf: Self.checkoutByCodeInOneStatement, encoding: .utf8))
        #expect(before.migrations[index].checksum != now.migrations[index].checksum)
        #expect(Migration.isFormerChecksum(before.migrations[index].checksum, ofVersion: 10))
        try await TestDatabase.withScratchDatabase(migrated: true) { freshURL in
            try await TestDatabase.withScratchDatabase { url in
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                    try await before.apply(on: client)
                    let coupon = try await TestDatabase.makeCoupon(quantity: 3, on: client)
                    try await client.query("SELECT * FROM issue_tickets(\(coupon), ARRAY['ann', 'bob'])")
                    #expect(try await now.apply(on: client).isEmpty, "nothing runs again")
                    #expect(try await now.status(on: client).allSatisfy { $0.state == .applied })
                    #expect(try await Self.recorded(on: client) == Self.records(of: before.migrations), "the record of 0010 as it ran")
                    let audit = try await TestDatabase.audit(couponID: coupon, on: client)
                    #expect(audit.isConsistent && audit.ticketsHeld == 2, "\(audit)")
                }
                let difference = SchemaDocumentTests.firstDifference(try SchemaDocumentTests.schema(of: url), try SchemaDocumentTests.schema(of: freshURL))
                #expect(difference == nil, "0010 in one statement and in five differ at \(difference ?? "")")
            }
        }
    }

    /// A database that stopped at 0010 (as a Citus cluster did: every file before it applied, 0010
    /// refused and rolled back, no function file reached) goes on with `migrate`: 0010 and the
    /// functions apply, and the schema is a fresh database's.
    @Test func aDatabaseStoppedAt0010GoesOn() async throws {
        let now = try runner(TestDatabase.migrationsFolder)
        let stopped = MigrationRunner(migrations: now.migrations.filter { ($0.version ?? .max) < 10 }, logger: TestDatabase.logger)
        try await TestDatabase.withScratchDatabase(migrated: true) { freshURL in
            try await TestDatabase.withScratchDatabase { url in
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                    try await stopped.apply(on: client)
                    let applied = try await now.apply(on: client)
                    #expect(applied.map(\.label) == now.migrations.filter { ($0.version ?? .max) >= 10 }.map(\.label))
                    #expect(try await Self.recorded(on: client) == Self.records(of: now.migrations))
                    let coupon = try await TestDatabase.makeCoupon(quantity: 2, on: client)
                    try await client.query("SELECT * FROM issue_tickets(\(coupon), ARRAY['ann', 'bob', 'cid'])")
                    let audit = try await TestDatabase.audit(couponID: coupon, on: client)
                    #expect(audit.isConsistent && audit.ticketsHeld == 2, "\(audit)")
                }
                let difference = SchemaDocumentTests.firstDifference(try SchemaDocumentTests.schema(of: url), try SchemaDocumentTests.schema(of: freshURL))
                #expect(difference == nil, "the schema differs from a fresh one at \(difference ?? "")")
            }
        }
    }

    /// The versioned checksums a database recorded.
    static func recorded(on client: PostgresClient) async throws -> [Int: String] {
        var recorded: [Int: String] = [:]
        for try await (version, checksum) in try await client.query("SELECT version, checksum FROM schema_migrations")
            .decode((Int, String).self) { recorded[version] = checksum }
        return recorded
    }

    /// The records applying these files makes, by version.
    static func records(of migrations: [Migration]) -> [Int: String] {
        Dictionary(uniqueKeysWithValues: migrations.compactMap { m in m.version.map { ($0, m.checksum) } })
    }
}
