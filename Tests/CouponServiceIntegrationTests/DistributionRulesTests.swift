@testable import CouponService
import CouponTestSupport
import Foundation
import PostgresNIO
import Testing

/// The schema keeps the rules a distribution by coupon (Citus, docs/scaling.md) needs, read from the
/// catalog so a new table or constraint cannot slip past them.
@Suite(.migratedDatabase) struct DistributionRulesTests {
    /// Every table of the schema, with the column it would be distributed by; nil for tables that stay
    /// local on the coordinator (bookkeeping no request reads, the webhook endpoints).
    static let distribution: [String: String?] = [
        "coupons": "id",
        "coupon_tickets": "coupon_id",
        "outbox": "coupon_id",
        "webhooks": nil,
        "schema_migrations": nil,
        "schema_functions": nil,
    ]

    @Test func theSchemaCanBeDistributedByCoupon() async throws {
        let client = TestDatabase.client
        #expect(try await Self.violations(on: client) == [])
    }

    /// The check itself: a unique constraint without coupon_id, and a table nobody placed, are caught.
    @Test func aConstraintWithoutTheCouponIsCaught() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                try await client.query("ALTER TABLE coupon_tickets ADD CONSTRAINT tickets_code_alone UNIQUE (code)")
                try await client.query("CREATE TABLE coupon_notes (id bigint PRIMARY KEY, coupon_id bigint REFERENCES coupons (id))")
                let found = try await Self.violations(on: client)
                #expect(found.contains { $0.contains("tickets_code_alone") })
                #expect(found.contains { $0.contains("coupon_notes") })
            }
        }
    }

    /// migrations/0007 distributes the schema on a Citus cluster (scripts/citus-check.sh runs it there);
    /// on plain PostgreSQL it must leave every table, trigger and function as it found them.
    @Test func theCitusMigrationChangesNothingOnPlainPostgreSQL() async throws {
        let migrations = try Migration.load(from: TestDatabase.migrationsFolder)
        let citus = try #require(migrations.first { $0.name == "distributed_on_citus" })
        try await TestDatabase.withScratchDatabase { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                func schema() async throws -> String {
                    let rows = try await client.query(
                        """
                        SELECT coalesce(string_agg(definition, E'\n' ORDER BY definition), '') FROM (
                            SELECT pg_get_functiondef(p.oid) AS definition FROM pg_proc p
                            WHERE p.pronamespace = 'public'::regnamespace
                            UNION ALL SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE NOT t.tgisinternal
                            UNION ALL SELECT c.relname::text || ' ' || c.relkind::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                        ) AS everything
                        """)
                    for try await text in rows.decode(String.self) { return text }
                    return ""
                }
                let citusVersion = try #require(citus.version)
                // Every other file first, the function files included (on plain PostgreSQL their Citus steps
                // do nothing); then 0007 alone.
                let before = migrations.filter { $0.version != citusVersion }
                _ = try await MigrationRunner(migrations: before, logger: TestDatabase.logger).apply(on: client)
                let withoutCitus = try await schema()
                #expect(withoutCitus.contains("add_coupon_tickets"), "the snapshot sees the functions")
                let applied = try await MigrationRunner(migrations: migrations, logger: TestDatabase.logger).apply(on: client)
                #expect(applied.map(\.name).contains(citus.name))
                #expect(try await schema() == withoutCitus)
            }
        }
    }

    /// One line per broken rule: a table without a placement; a primary key, unique or exclusion
    /// constraint without the distribution column; a foreign key between distributed tables that does
    /// not map distribution column to distribution column.
    static func violations(on client: PostgresClient) async throws -> [String] {
        var found: [String] = []
        let tables = try await client.query(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')")
        for try await table in tables.decode(String.self) where distribution[table] == nil {
            found.append("table \(table): not placed (add it to DistributionRulesTests.distribution and docs/scaling.md)")
        }
        let constraints = try await client.query(
            """
            SELECT t.relname, c.conname, c.contype::text,
                   array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(num, i)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i),
                   coalesce(r.relname::text, ''),
                   array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(num, i)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i)
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            LEFT JOIN pg_class r ON r.oid = c.confrelid
            WHERE t.relnamespace = 'public'::regnamespace AND c.contype IN ('p', 'u', 'x', 'f')
            """)
        for try await (table, name, type, columns, referenced, referencedColumns) in constraints.decode(
            (String, String, String, [String], String, [String]).self)
        {
            guard case .some(.some(let column)) = distribution[table] else { continue }
            if type == "f" {
                guard case .some(.some(let referencedColumn)) = distribution[referenced] else { continue }
                let pairs = zip(columns, referencedColumns)
                if !pairs.contains(where: { $0 == column && $1 == referencedColumn }) {
                    found.append("\(table).\(name): foreign key must map \(column) to \(referenced).\(referencedColumn)")
                }
            } else if !columns.contains(column) {
                found.append("\(table).\(name): \(columns) must include \(column)")
            }
        }
        return found
    }
}
