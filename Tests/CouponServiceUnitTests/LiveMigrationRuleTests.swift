@testable import CouponService
import Foundation
import Testing

/// What a versioned migration may do while instances serve a sale (docs/operations.md, "Migrations
/// while instances serve"), held against every file after 0010. On the tables a sale writes, a
/// migration takes no lock that writes queue behind for longer than a moment: indexes built
/// CONCURRENTLY (in a `-- migrate: no-transaction` file, IF NOT EXISTS), constraints added NOT VALID
/// and validated apart, nothing that rewrites or scans the table under its write lock; and nothing
/// the previous release, still serving beside the new schema, depends on is renamed or dropped.
@Suite struct LiveMigrationRuleTests {
    /// The tables a sale writes, large on a database that has sold.
    static let saleTables: Set<String> = ["coupons", "coupon_tickets", "outbox"]
    /// 0001 to 0010 were applied before the rule; 0010 broke it (the lesson, below).
    static let firstUnderTheRule = 11

    /// What breaks the rule in a migration, one line per statement and cause.
    static func findings(in migration: Migration) -> [String] {
        let statements = SQLScript.statements(in: migration.sql).map {
            CitusRestrictionTests.SQLFile.withoutComments($0).lowercased()
                .replacing(#/\s+/#, with: " ").trimmingCharacters(in: .whitespaces)
        }
        // A table made by the same file is empty while the file runs.
        let made = Set(statements.compactMap { $0.firstMatch(of: #/^create table (?:if not exists )?(\w+)/#).map { String($0.1) } })
        let addsUnvalidated = statements.contains { $0.contains(" not valid") }
        var findings: [String] = []
        func find(_ statement: String, _ cause: String) { findings.append("\(cause): \(statement.prefix(90))") }
        for statement in statements {
            if let index = statement.firstMatch(of: #/^create (?:unique )?index (concurrently )?(if not exists )?(?:\w+ )?on (?:only )?(\w+)/#) {
                let table = String(index.3)
                guard saleTables.contains(table), !made.contains(table) else { continue }
                if index.1 == nil { find(statement, "an index built without CONCURRENTLY: writes to \(table) wait for the build") }
                if index.1 != nil, migration.runsInTransaction { find(statement, "CONCURRENTLY in a file without `-- migrate: no-transaction`") }
                if index.1 != nil, index.2 == nil { find(statement, "a concurrent build without IF NOT EXISTS cannot run again") }
                continue
            }
            if let drop = statement.firstMatch(of: #/^drop table (?:if exists )?(\w+)/#), saleTables.contains(String(drop.1)) {
                find(statement, "a table the previous release uses, dropped")
                continue
            }
            if statement.firstMatch(of: #/^(?:vacuum full|cluster|lock table)\b/#) != nil {
                find(statement, "a rewrite or a lock of a whole table")
                continue
            }
            guard let alter = statement.firstMatch(of: #/^alter table (?:if exists )?(?:only )?(\w+) (.*)$/#),
                  saleTables.contains(String(alter.1)), !made.contains(String(alter.1)) else { continue }
            let change = String(alter.2)
            let rules: [(Regex<Substring>, String)] = [
                (#/add constraint \w+ (?:check|foreign key)(?!.* not valid)/#, "a constraint validated under the write lock: add it NOT VALID, validate it apart"),
                (#/add constraint \w+ (?:unique|primary key)(?!.* using index)/#, "a unique index built under the write lock: build it CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX"),
                (#/alter column \w+ (?:set data )?type /#, "a column's type changed: the table is rewritten"),
                (#/set not null/#, "SET NOT NULL scans the table under the write lock"),
                (#/add column .*(?:default (?:clock_timestamp|random|gen_random_uuid|nextval|timeofday)\(|\bserial\b|\bbigserial\b|stored)/#, "a column whose default or expression rewrites the table"),
                (#/set (?:logged|unlogged|tablespace|access method)/#, "the table is rewritten"),
                (#/\brename\b|drop column/#, "a name the previous release uses, changed: add now, drop a release later"),
            ]
            for (pattern, cause) in rules where change.contains(pattern) { find(statement, cause) }
            if change.contains("validate constraint"), addsUnvalidated, migration.runsInTransaction {
                find(statement, "validated in the transaction that added it: the write lock stays through the scan")
            }
        }
        return findings
    }

    @Test func everyMigrationAfter0010RunsWhileInstancesServe() throws {
        let underTheRule = try Migration.embedded().filter { ($0.version ?? 0) >= Self.firstUnderTheRule }
        #expect(!underTheRule.isEmpty)
        for migration in underTheRule {
            #expect(Self.findings(in: migration).isEmpty, "\(migration.fileName)")
        }
    }

    /// 0010's lesson: on a database of millions of tickets, its two CHECK constraints each scanned
    /// coupon_tickets and its index was built with the table's writes held, issuance stalled meanwhile.
    /// It stays as applied (its checksum is recorded); the rule finds exactly those three statements.
    @Test func theRuleFindsWhat0010Did() throws {
        let migration = try #require(try Migration.embedded().first { $0.version == 10 })
        let findings = Self.findings(in: migration)
        #expect(findings.count == 3, "\(findings)")
        #expect(findings.filter { $0.hasPrefix("a constraint validated under the write lock") }.count == 2)
        #expect(findings.filter { $0.hasPrefix("an index built without CONCURRENTLY") }.count == 1)
    }

    @Test(arguments: [
        ("ALTER TABLE coupon_tickets ADD CONSTRAINT c CHECK (x > 0);", 1),
        ("ALTER TABLE coupon_tickets ADD CONSTRAINT c CHECK (x > 0) NOT VALID;", 0),
        ("ALTER TABLE coupon_tickets ADD CONSTRAINT c CHECK (x > 0) NOT VALID; ALTER TABLE coupon_tickets VALIDATE CONSTRAINT c;", 1),
        ("-- migrate: no-transaction\nALTER TABLE coupon_tickets ADD CONSTRAINT c CHECK (x > 0) NOT VALID;\nALTER TABLE coupon_tickets VALIDATE CONSTRAINT c;", 0),
        ("ALTER TABLE coupon_tickets VALIDATE CONSTRAINT c;", 0),
        ("ALTER TABLE coupons ADD CONSTRAINT u UNIQUE (name);", 1),
        ("ALTER TABLE coupons ADD CONSTRAINT u UNIQUE USING INDEX coupons_name;", 0),
        ("ALTER TABLE coupons ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES other (id);", 1),
        ("CREATE INDEX i ON coupon_tickets (x);", 1),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON coupon_tickets (x);", 1),
        ("-- migrate: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON coupon_tickets (x);", 0),
        ("-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY i ON ONLY outbox (x);", 1),
        ("CREATE TABLE t (x int); CREATE INDEX i ON t (x);", 0),
        ("CREATE TABLE outbox (x int); CREATE INDEX i ON outbox (x);", 0),
        ("ALTER TABLE coupon_tickets ALTER COLUMN user_id TYPE varchar(64);", 1),
        ("ALTER TABLE coupon_tickets ALTER COLUMN user_id SET NOT NULL;", 1),
        ("ALTER TABLE coupon_tickets ADD COLUMN seen timestamptz DEFAULT clock_timestamp();", 1),
        ("ALTER TABLE coupon_tickets ADD COLUMN seen timestamptz DEFAULT now();", 0),
        ("ALTER TABLE coupon_tickets ADD COLUMN n bigserial;", 1),
        ("ALTER TABLE coupon_tickets ADD COLUMN note text;", 0),
        ("ALTER TABLE coupons RENAME COLUMN name TO title;", 1),
        ("ALTER TABLE coupons DROP COLUMN name;", 1),
        ("DROP TABLE outbox;", 1),
        ("VACUUM FULL coupon_tickets;", 1),
        ("ALTER TABLE webhooks ADD CONSTRAINT c CHECK (attempts >= 0);", 0),
    ])
    func statementsUnderTheRule(sql: String, findings expected: Int) {
        let findings = Self.findings(in: Migration(version: 99, name: "case", sql: sql))
        #expect(findings.count == expected, "\(findings)")
    }
}
