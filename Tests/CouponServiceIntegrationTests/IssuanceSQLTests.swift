@testable import CouponService
import CouponTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// The issuance SQL itself, from many connections at once, with no HTTP in between.
@Suite(.migratedDatabase) struct IssuanceSQLTests {
    @Test(.heavy) func manyConnectionsIssueExactlyTheQuantity() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 700)
        // Groups of users, some repeated within a group and across groups, from 32 connections.
        let outcomes = try await withPostgresClient(databaseURL: TestDatabase.url, logger: TestDatabase.logger) { client in
            let issuer = IssuanceStore(database: .running(client), metrics: CouponMetrics())
            return try await withThrowingTaskGroup(of: [String: TicketAnswer].self) { group in
                for worker in 0..<32 {
                    group.addTask {
                        var outcomes: [String: TicketAnswer] = [:]
                        for round in 0..<12 {
                            let users = (0..<4).map { "sql-\((worker * 48 + round * 4 + $0) % 1400)" } + ["sql-shared-\(round)"]
                            for (user, outcome) in try await issuer.issue(couponID: couponID, userIDs: users + [users[0]]) {
                                if outcome.outcome == .issued { outcomes[user] = outcome }
                            }
                        }
                        return outcomes
                    }
                }
                var issued: [String: TicketAnswer] = [:]
                for try await outcomes in group {
                    for (user, outcome) in outcomes {
                        #expect(issued[user] == nil, "\(user) was issued twice")
                        issued[user] = outcome
                    }
                }
                return issued
            }
        }
        #expect(outcomes.count == 700)
        let audit = try await TestDatabase.audit(couponID: couponID)
        #expect(audit == .init(quantity: 700, issuedCount: 700, ticketRows: 700, ticketsHeld: 700, distinctUsers: 700))
        for (user, outcome) in outcomes {
            guard outcome.outcome == .issued, let ticket = outcome.ticket?.ticket else { continue }
            #expect(try await TestDatabase.heldCode(couponID: couponID, userID: user) == ticket.code)
        }
    }

    @Test func aGroupAnswersEveryDistinctUserOnce() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 2)
        let issuer = IssuanceStore(database: .running(client), metrics: CouponMetrics())
        let first = try await issuer.issue(couponID: couponID, userIDs: ["a", "b", "a", "c"])
        #expect(first.count == 3)
        #expect(first.values.filter { $0.outcome == .issued }.count == 2)
        #expect(first["c"]?.outcome == .soldOut, "tickets go in arrival order")
        let second = try await issuer.issue(couponID: couponID, userIDs: ["b", "d"])
        #expect(second["b"]?.outcome == .alreadyIssued)
        #expect(second["d"]?.outcome == .soldOut)
        #expect(try await issuer.issue(couponID: 9_000_000_000_000, userIDs: ["a"]).mapValues(\.outcome) == ["a": .couponNotFound])
        #expect(try await TestDatabase.audit(couponID: couponID).isConsistent)
    }

    @Test func aFailedStatementKeepsNothingAndFreesTheCoupon() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 5)
        // One pooled connection, so the issuance after the failure runs on the connection it left.
        try await withPostgresClient(databaseURL: TestDatabase.url, maximumConnections: 1, logger: TestDatabase.logger) { client in
            let store = IssuanceStore(database: .running(client), metrics: CouponMetrics())
            // PostgreSQL refuses a NUL in text once BEGIN and the lock have run, with COMMIT queued
            // behind the failing statement: that COMMIT is answered with ROLLBACK.
            await #expect(throws: (any Error).self) {
                try await store.issue(couponID: couponID, userIDs: ["fail-1", "fail-\u{0}-2"])
            }
            let untouched = try await TestDatabase.audit(couponID: couponID)
            #expect(untouched.issuedCount == 0 && untouched.ticketsHeld == 0)
            // No transaction was left open holding the coupon's row lock...
            try await TestDatabase.client.withConnection { other in
                try await other.query("BEGIN", logger: TestDatabase.logger)
                try await other.query("SELECT FROM coupons WHERE id = \(couponID) FOR NO KEY UPDATE NOWAIT", logger: TestDatabase.logger)
                try await other.query("ROLLBACK", logger: TestDatabase.logger)
            }
            // ...nor an aborted one: the same connection issues the next group.
            let outcomes = try await store.issue(couponID: couponID, userIDs: ["fail-1", "after-1"])
            #expect(outcomes.values.allSatisfy { $0.outcome == .issued })
            #expect(try await TestDatabase.audit(couponID: couponID) == .init(
                quantity: 5, issuedCount: 2, ticketRows: 5, ticketsHeld: 2, distinctUsers: 2))
        }
    }

    @Test func aLaterCouponDoesNotReadTheRowsOfAnEarlierOne() async throws {
        // issue_tickets's hint probe once read every row of the coupons created before this one
        // (a sequential scan where an index probe would do), so the second coupon of a database sold
        // at a tenth of the speed of the first. Counted in buffers, not timed.
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                var coupons: [Int64] = []
                for _ in 1...2 {
                    coupons.append(try await TestDatabase.makeCoupon(quantity: 50000, name: "rows", on: client))
                }
                let (earlier, later) = (coupons[0], coupons[1])
                try await client.query("SELECT FROM issue_tickets(\(earlier), ARRAY(SELECT 'first-' || g FROM generate_series(1, 100) AS g))")
                let pages = try await client.query("SELECT relpages FROM pg_class WHERE relname = 'coupon_tickets'")
                    .decode(Int.self).first(where: { _ in true }) ?? 0
                // The second issuance of a session, so planning and catalogue reads are not counted;
                // rolled back, as EXPLAIN ANALYZE really issues.
                let (plan, probeIssued) = try await client.withConnection { connection in
                    try await connection.query("BEGIN", logger: TestDatabase.logger)
                    try await connection.query("SELECT FROM issue_tickets(\(later), ARRAY['warm-up'])", logger: TestDatabase.logger)
                    let plan = try await connection.query(
                        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM issue_tickets(\(later), ARRAY['probe'])",
                        logger: TestDatabase.logger
                    ).decode(String.self).first(where: { _ in true })
                    let issued = try await connection.query(
                        "SELECT count(*) FROM coupon_tickets WHERE coupon_id = \(later) AND user_id = 'probe'", logger: TestDatabase.logger
                    ).decode(Int.self).first(where: { _ in true })
                    try await connection.query("ROLLBACK", logger: TestDatabase.logger)
                    return (plan ?? "[]", issued == 1)
                }
                #expect(probeIssued, "the measured call issued a ticket of the later coupon")
                let node = try #require(
                    (try JSONSerialization.jsonObject(with: Data(plan.utf8)) as? [[String: Any]])?.first?["Plan"] as? [String: Any])
                let blocks = (node["Shared Hit Blocks"] as? Int ?? 0) + (node["Shared Read Blocks"] as? Int ?? 0)
                #expect(pages > 500)
                #expect(blocks < pages / 10, "one issuance read \(blocks) of the table's \(pages) pages")
            }
        }
    }

    @Test func theFirstCouponOfANewDatabaseIsEstimatedAsItIs() async throws {
        // In a new database user_id and number had never been analyzed: the planner expected each
        // user of a group to hold thousands of tickets and each ticket number to match thousands of
        // rows, sized the claim's hash tables for millions (spilling them to disk), and the first
        // coupon of a million tickets sold at a tenth of its speed until autovacuum analyzed the table
        // (docs/design.md). The creation's ANALYZE covers both.
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                let couponID = try await TestDatabase.makeCoupon(quantity: 20000, name: "first", on: client)
                @Sendable func estimate(_ condition: String) async throws -> Int {
                    let plan = try await client.query(
                        PostgresQuery(unsafeSQL: "EXPLAIN (FORMAT JSON) SELECT 1 FROM coupon_tickets WHERE coupon_id = \(couponID) AND \(condition)")
                    ).decode(String.self).first(where: { _ in true }) ?? "[]"
                    let node = (try JSONSerialization.jsonObject(with: Data(plan.utf8)) as? [[String: Any]])?.first?["Plan"] as? [String: Any]
                    return node?["Plan Rows"] as? Int ?? -1
                }
                let held = try await estimate("user_id = ANY (ARRAY(SELECT 'u' || g FROM generate_series(1, 64) AS g))")
                #expect((0...64).contains(held), "a group of 64 new users is expected to hold \(held) tickets")
                let numbered = try await estimate("number = 5")
                #expect((0...1).contains(numbered), "ticket number 5 of one coupon is expected in \(numbered) rows")
            }
        }
    }

    @Test func theClaimIsNeverCompiled() async throws {
        // On a new coupon of a million tickets the claim's estimates passed jit_above_cost, and
        // PostgreSQL compiled it on every call: 460 ms a call. Here every statement passes it
        // (jit_above_cost 0); issue_tickets' own setting keeps the compiler out of its statements,
        // counted by pg_stat_statements, while a statement outside it is compiled.
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
                let couponID = try await TestDatabase.makeCoupon(quantity: 100, name: "jit", on: client)
                try await client.withConnection { connection in
                    func compiled(_ prefix: String) async throws -> Int {
                        let rows = try await connection.query(
                            """
                            SELECT coalesce(sum(jit_functions), 0)::bigint FROM pg_stat_statements
                            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                              AND query LIKE \(prefix) || '%'
                            """, logger: TestDatabase.logger)
                        return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
                    }
                    try await connection.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", logger: TestDatabase.logger)
                    try await connection.query("SET pg_stat_statements.track = 'all'", logger: TestDatabase.logger)
                    try await connection.query("SET jit_above_cost = 0", logger: TestDatabase.logger)
                    try await connection.query("SELECT sum(g) AS jit_witness FROM generate_series(1, 10) AS g", logger: TestDatabase.logger)
                    try await connection.query("BEGIN", logger: TestDatabase.logger)
                    try await connection.query(
                        "SELECT count(*) FROM issue_tickets(\(couponID), ARRAY['jit-1', 'jit-2'])", logger: TestDatabase.logger)
                    try await connection.query("COMMIT", logger: TestDatabase.logger)
                    #expect(try await compiled("SELECT sum(g) AS jit_witness") > 0, "JIT works here, so the next expectation means something")
                    #expect(try await compiled("WITH asked AS") == 0, "the claim was compiled")
                }
                #expect(try await TestDatabase.audit(couponID: couponID, on: client).ticketsHeld == 2)
            }
        }
    }

    @Test func claimsStopAtTheQuantityWhenFreeRowsOutnumberIt() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 3)
        // What a raise leaves for a moment: its new rows are written before the quantity moves.
        try await client.query("SELECT add_coupon_tickets(\(couponID), 4, 10)")
        let issuer = IssuanceStore(database: .running(client), metrics: CouponMetrics())
        let outcomes = try await issuer.issue(couponID: couponID, userIDs: (1...6).map { "cap-\($0)" })
        #expect(outcomes.values.filter { $0.outcome == .issued }.count == 3)
        #expect(outcomes["cap-4"]?.outcome == .soldOut && outcomes["cap-6"]?.outcome == .soldOut)
        let audit = try await TestDatabase.audit(couponID: couponID)
        #expect(audit.issuedCount == 3 && audit.ticketsHeld == 3 && audit.distinctUsers == 3)
    }

    @Test func aFreeTicketBehindTheHintIsStillIssued() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 4)
        let issuer = IssuanceStore(database: .running(client), metrics: CouponMetrics())
        _ = try await issuer.issue(couponID: couponID, userIDs: ["hint-1"])
        // A hint that lies (as a ticket skipped while someone else held its row lock would leave):
        // tickets 2..4 are free and all behind it.
        try await client.query("UPDATE coupons SET issued_through = 3 WHERE id = \(couponID)")
        let first = try await issuer.issue(couponID: couponID, userIDs: ["hint-2"])
        guard first["hint-2"]?.outcome == .issued, let ticket = first["hint-2"]?.ticket?.ticket else { Issue.record("\(first)"); return }
        #expect(ticket.number == 4, "the claim starts after the hint while free tickets lie there")
        let rest = try await issuer.issue(couponID: couponID, userIDs: ["hint-3", "hint-4", "hint-5"])
        #expect(rest.values.filter { $0.outcome == .issued }.count == 2)
        #expect(rest["hint-5"]?.outcome == .soldOut)
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 4, issuedCount: 4, ticketRows: 4, ticketsHeld: 4, distinctUsers: 4))
    }

    /// ANALYZE takes a SHARE UPDATE EXCLUSIVE lock; held elsewhere, it stops a statement that analyzes
    /// and lets one that does not through. A raise analyzes nothing (add_coupon_tickets); a creation does.
    @Test(.migratedDatabase) func aRaiseAnalyzesNothingAndACreationDoes() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 10)
        try await client.withConnection { holder in
            try await holder.query("BEGIN", logger: TestDatabase.logger)
            try await holder.query("LOCK TABLE coupon_tickets IN SHARE UPDATE EXCLUSIVE MODE", logger: TestDatabase.logger)
            try await client.withConnection { other in
                /// Whether the statement ran within a second, rolled back either way.
                func attempt(_ sql: PostgresQuery) async -> Bool {
                    do {
                        try await other.query("BEGIN", logger: TestDatabase.logger)
                        try await other.query("SET LOCAL lock_timeout = '1s'", logger: TestDatabase.logger)
                        _ = try await other.query(sql, logger: TestDatabase.logger).collect()  // its error comes with the rows
                        try await other.query("ROLLBACK", logger: TestDatabase.logger)
                        return true
                    } catch {
                        _ = try? await other.query("ROLLBACK", logger: TestDatabase.logger)
                        return false
                    }
                }
                #expect(await attempt("SELECT add_coupon_tickets(\(couponID), 11, 20)"), "a raise does not wait for the statistics lock")
                #expect(
                    await attempt(
                        "WITH c AS (INSERT INTO coupons (name, quantity) VALUES ('analyzed', 10) RETURNING id) SELECT add_coupon_tickets(c.id, 1, 10) FROM c"
                    ) == false, "a creation analyzes, so it waits for it")
            }
            try await holder.query("ROLLBACK", logger: TestDatabase.logger)
        }
        #expect(try await TestDatabase.audit(couponID: couponID).ticketRows == 10, "both attempts rolled back")
    }

    @Test func issuanceGoesOnWhileARaiseWritesItsRows() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 10)
        let raise = Task {
            try await CouponStore(database: .running(client)).change(id: couponID, CouponChange(quantity: 300_000))
        }
        // The raise is writing its rows (a few seconds' work) once its statement shows as active.
        let writing = try await waitUntil {
            let rows = try await client.query(
                """
                SELECT count(*)::int FROM pg_stat_activity
                WHERE datname = current_database() AND state = 'active' AND query = 'SELECT add_coupon_tickets($1, $2, $3)'
                """)
            return try await rows.decode(Int.self).first(where: { _ in true }) == 1
        }
        try #require(writing, "the raise was never seen writing its rows")
        let outcomes = try await IssuanceStore(database: .running(client), metrics: CouponMetrics())
            .issue(couponID: couponID, userIDs: ["during-raise"])
        let quantityMeanwhile = try await TestDatabase.audit(couponID: couponID).quantity
        #expect(outcomes["during-raise"]?.outcome == .issued)
        #expect(quantityMeanwhile == 10, "issued while the raise was still writing, not after it")
        guard case .changed(let coupon) = try await raise.value else { Issue.record("raise failed"); return }
        #expect(coupon.quantity == 300_000 && coupon.issued == 1)
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 300_000, issuedCount: 1, ticketRows: 300_000, ticketsHeld: 1, distinctUsers: 1))
    }

    @Test func theCounterCannotPassTheQuantity() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 1)
        await #expect(throws: PSQLError.self) {
            try await client.query("UPDATE coupons SET issued_count = 2 WHERE id = \(couponID)")
        }
    }
}
