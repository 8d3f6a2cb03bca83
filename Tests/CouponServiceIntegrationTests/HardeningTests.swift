@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

/// The holes an attacker tries first (found by hand on 2026-12-01), each closed: the answer is a clear
/// 4xx or an answer from memory, and the database shows that nothing was written or asked.
@Suite(.migratedDatabase) struct HardeningTests {
    @Test func instantsOutsideFourDigitYearsAreRefusedAndNothingIsCreated() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let before = try await TestDatabase.couponCount(named: "far-instant")
            // The first trapped the writer of every later answer about the coupon: every instance crashed.
            for instant in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-23:59"] {
                let created = try await client.send(
                    .post, "/v1/coupons", json: #"{"name":"far-instant","quantity":1,"starts_at":"\#(instant)"}"#, admin: true)
                #expect(created.status == .badRequest && created.problemCode == "invalid_request", "\(instant)")
            }
            #expect(try await TestDatabase.couponCount(named: "far-instant") == before)
        }
    }

    @Test func aKeyNamedTwiceIsRefusedAndNothingIsIssued() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            let twice = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"victim","user_id":"me"}"#)
            #expect(twice.status == .badRequest && twice.problemCode == "invalid_request")
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 0)
        }
    }

    @Test func aCursorOutOfRangeIs400() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            // Found by hand: 500, and the SQL with its bind values in the log.
            let answer = try await client.send(.get, "/v1/users/u1/tickets?after=9223372036854775807-1")
            #expect(answer.status == .badRequest && answer.problemCode == "invalid_request")
        }
    }

    /// postgres-nio hides bind values itself, but the server's detail quotes them
    /// ("Key (v)=(victim-...) already exists"), and its description shows that detail.
    @Test func errorLogsCarryNoBindValues() async throws {
        let secret = "victim-\(UInt32.random(in: 0...UInt32.max))"
        try await TestDatabase.client.withConnection { connection in
            try await connection.query("CREATE TEMP TABLE held (user_id text UNIQUE)", logger: TestDatabase.logger)
            do {
                _ = try await connection.query("INSERT INTO held VALUES (\(secret)), (\(secret))", logger: TestDatabase.logger).collect()
                Issue.record("a duplicate key did not fail")
            } catch {
                #expect(String(reflecting: error).contains(secret), "postgres-nio's own description shows the value")
                let logged = DatabaseFailure.logged(error)
                #expect(!logged.contains(secret), "\(logged)")
                #expect(logged.contains("23505") && logged.contains("INSERT INTO held"), "\(logged)")
            }
            try await connection.query("DROP TABLE held", logger: TestDatabase.logger)
        }
    }

    /// Admin writes beyond a quarter of the pool are refused at once, so they cannot take it from a sale.
    @Test(.migratedDatabase) func concurrentAdminWritesAreBounded() async throws {
        var arguments = TestArguments()
        arguments.poolSize = 4
        try await buildApplication(arguments).test(.router) { client in
            let before = try await TestDatabase.couponCount(named: "first")
            // The first creation waits on a lock held here, mid-write, while the second one asks.
            try await TestDatabase.client.withConnection { holder in
                try await holder.query("BEGIN", logger: TestDatabase.logger)
                try await holder.query("LOCK TABLE coupon_tickets IN SHARE UPDATE EXCLUSIVE MODE", logger: TestDatabase.logger)
                async let first = client.send(.post, "/v1/coupons", json: #"{"name":"first","quantity":10}"#, admin: true)
                let waiting = try await waitUntil {
                    let rows = try await TestDatabase.client.query(
                        "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
                    return try await rows.decode(Int.self).first(where: { _ in true }) == 1
                }
                let second = try await client.send(.post, "/v1/coupons", json: #"{"name":"second","quantity":10}"#, admin: true)
                try await holder.query("ROLLBACK", logger: TestDatabase.logger)
                #expect(waiting, "the first creation was never seen waiting")
                #expect(second.status == .serviceUnavailable && second.problemCode == "admin_busy")
                #expect(second.headers[.retryAfter] == "1")
                #expect(try await first.status == .created)
            }
            #expect(try await TestDatabase.couponCount(named: "first") == before + 1)
        }
    }

    @Test(.migratedDatabase) func unknownCouponIdsAreAnsweredFromMemory() async throws {
        let url = TestDatabase.url
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
            try #require(try await client.waitForListener())
            // Ids 1 to 1000 never existed; the coupon made now is 1001.
            try await TestDatabase.client.query("SELECT setval('coupons_id_seq', 1000)")
            let known = try await client.createCoupon(quantity: 3)
            let before = try await TestDatabase.statementsRun(databaseURL: url)
            for probe in 0..<50 {
                // Below the highest id known: no such coupon, from memory.
                #expect(try await client.issue(known - 1 - Int64(probe % 2), "x").problemCode == "coupon_not_found")
                // Above it: one read of each id the first time, then from memory.
                #expect(try await client.issue(known + 1_000 + Int64(probe % 5), "x").problemCode == "coupon_not_found")
            }
            let statements = try await TestDatabase.statementsRun(databaseURL: url) - before
            // 100 answers; through the issuance queue each would be a transaction of three statements.
            #expect(statements <= 5 + 3, "\(statements) statements: one read for each of 5 unheard-of ids (and keep-alives)")
            #expect(try await client.issue(known, "x").status == .created)
        }
    }
}
