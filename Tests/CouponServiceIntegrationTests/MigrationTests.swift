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

    @Test func theProjectMigrationsApplyOnceThenDoNothing() async throws {
        try await TestDatabase.withScratchDatabase { url in
            let runner = try runner(TestDatabase.migrationsFolder)
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                #expect(try await runner.apply(on: client, dryRun: true).map(\.version) == runner.migrations.map(\.version))
                #expect(try await runner.status(on: client).allSatisfy { $0.state == .pending })
                #expect(try await runner.apply(on: client).count == runner.migrations.count)
                #expect(try await runner.apply(on: client).isEmpty)
                #expect(try await runner.status(on: client).allSatisfy { $0.state == .applied })
                let rows = try await client.query("SELECT count(*)::int FROM schema_migrations")
                for try await count in rows.decode(Int.self) { #expect(count == runner.migrations.count) }
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

    @Test func badFileNamesAreRefused() throws {
        let folder = try scratchFolder(["first.sql": "SELECT 1;"])
        #expect(throws: MigrationError.badFileName("first.sql")) { try Migration.load(from: folder) }
    }
}
