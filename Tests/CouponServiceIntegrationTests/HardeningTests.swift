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

    /// The red team's bodies (2026-12-06): in UTF-16 the old key check lost track of a string and
    /// Foundation's decoder took the first of two values (victim1 got a ticket; a gateway keeping the
    /// last would have approved mallory); the same trick redeemed for the first of two orders. Now
    /// refused for their encoding, and a trailing comma for its syntax; nothing written.
    @Test func bodiesNotStrictUTF8JSONAreRefusedAndNothingIsWritten() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            func send(_ uri: String, _ body: Data) async throws -> TestResponse {
                try await client.execute(
                    uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: body))
            }
            let issue = "/v1/coupons/\(couponID)/issue"
            let utf16 = try await send(issue, utf16WithByteOrderMark(#"{"x":"\"","user_id":"victim1","user_id":"mallory"}"#))
            #expect(utf16.status == .badRequest && utf16.problemCode == "invalid_request")
            #expect(String(buffer: utf16.body).contains("it is UTF-16 with a byte order mark"))
            let trailing = try await send(issue, Data(#"{"user_id":"victim1",}"#.utf8))
            #expect(trailing.status == .badRequest && trailing.problemCode == "invalid_request")
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 0)

            #expect(try await client.issue(couponID, "victim1").status == .created)
            let redeem = try await send(
                "/v1/coupons/\(couponID)/tickets/victim1/redemption", utf16WithByteOrderMark(#"{"x":"\"","order_id":"o-1","order_id":"o-2"}"#))
            #expect(redeem.status == .badRequest && redeem.problemCode == "invalid_request")
            #expect(try await Self.orders(couponID) == ["victim1": nil], "no order recorded")
        }
    }

    /// Framing no HTTP client sends, on a live connection: a chunked body that breaks is a 400 (it was
    /// a 500 logged as an error), a length past 2^63 a 413 at once (it waited for the idle timeout),
    /// and a query parameter named twice a 400 on every route (the first value won silently).
    @Test func brokenFramingIsA4xxAndNothingIsWritten() async throws {
        // The test client's own connection waits while the raw exchanges run (seconds each beside every
        // other suite): past the usual 10 s idle timeout the server closed it under the client.
        var arguments = TestArguments()
        arguments.idleTimeout = .seconds(120)
        try await buildApplication(arguments).test(.live) { client in
            let port = try #require(client.port)
            let couponID = try await client.createCoupon(quantity: 5)
            let head = "POST /v1/coupons/\(couponID)/issue HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            let chunked = head + "Transfer-Encoding: chunked\r\n\r\n"
            let body = #"{"user_id":"framed"}"#
            for (name, request) in [
                ("a chunk size that is not hex", chunked + "zz\r\n\(body)\r\n0\r\n\r\n"),
                ("a chunk size past 2^64", chunked + "ffffffffffffffffff\r\n\(body)\r\n0\r\n\r\n"),
                ("a negative chunk size", chunked + "-1\r\n\(body)\r\n0\r\n\r\n"),
                ("a chunk without its CRLF", chunked + "\(String(body.utf8.count, radix: 16))\r\n\(body)0\r\n\r\n"),
            ] {
                let answer = try await rawExchange(port: port, request)
                #expect(answer?.hasPrefix("HTTP/1.1 400") == true && answer?.contains("invalid_request") == true, "\(name): \(answer ?? "no answer")")
            }
            for length in ["9223372036854775808", "18446744073709551615", "9223372036854775807"] {
                let answer = try await rawExchange(port: port, head + "Content-Length: \(length)\r\n\r\n\(body)")
                #expect(answer?.hasPrefix("HTTP/1.1 413") == true, "Content-Length \(length): \(answer ?? "no answer before the timeout")")
            }
            let past = try await rawExchange(port: port, head + "Content-Length: 18446744073709551616\r\n\r\n\(body)")
            #expect(past?.hasPrefix("HTTP/1.1 400") == true, "Content-Length 2^64: \(past ?? "no answer")")
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 0)

            #expect(try await client.issue(couponID, "ann").status == .created)
            #expect(try await client.send(.post, "/v1/coupons/\(couponID)/tickets/ann/redemption", json: #"{"order_id":"o-1"}"#).status == .created)
            for uri in [
                "/v1/coupons/\(couponID)/tickets/ann/redemption?order_id=o-1&order_id=o-2",
                "/v1/coupons/\(couponID)/tickets/ann/redemption?order_id=o-2&order_id=o-1",
                "/v1/coupons/\(couponID)/tickets/ann/redemption?order_id=o-1&order%5Fid=o-2",
            ] {
                let answer = try await client.send(.delete, uri)
                #expect(answer.status == .badRequest && answer.problemCode == "invalid_request", "\(uri)")
            }
            #expect(try await Self.orders(couponID) == ["ann": "o-1"], "the redemption stands")
            for uri in ["/v1/coupons/\(couponID)/tickets?limit=1&limit=2", "/v1/users/ann/tickets?after=x&after=y", "/healthz?a=1&a=2"] {
                let answer = try await client.send(.get, uri, admin: true)
                #expect(answer.status == .badRequest && answer.problemCode == "invalid_request", "\(uri)")
            }
        }
    }

    /// `/readyz` told anyone the database's address (the red team's): a stranger now learns ready or
    /// not; the admin token the detail, unless there is a metrics port, where the detail lives then.
    @Test func readinessTellsAStrangerNothingOfTheInfrastructure() async throws {
        struct Detail: Decodable { var status: String; var database: String?; var listener: String?; var primary: String? }
        let minimal = #"{"status":"ready"}"#
        try await buildApplication(TestArguments()).test(.router) { client in
            #expect(String(buffer: try await client.send(.get, "/readyz").body) == minimal)
            let forged = try await client.send(.get, "/readyz", bearer: "not-the-admin-token-though-32-bytes-long")
            #expect(forged.status == .ok && String(buffer: forged.body) == minimal)
            let admin = try await client.send(.get, "/readyz", admin: true).decode(Detail.self)
            #expect(admin.status == "ready" && admin.database == "up" && admin.primary != nil && admin.listener != nil)
        }
        var arguments = TestArguments()
        let metricsPort = try await freePort()
        arguments.metricsPort = metricsPort
        try await buildApplication(arguments).test(.live) { client in
            let beside = try await client.send(.get, "/readyz", admin: true)
            #expect(beside.status == .ok && String(buffer: beside.body) == minimal, "beside a metrics port, not even to the admin token")
            let detail = try await rawExchange(port: metricsPort, "GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            #expect(detail?.hasPrefix("HTTP/1.1 200") == true && detail?.contains(#""primary":"#) == true, "\(detail ?? "no answer")")
        }
    }

    /// At the connection cap, idle connections give way (the red team's: five idle keep-alive
    /// connections at a cap of five held a new client for 9.5 s, five that each asked every 5 s for
    /// 29.5 s, until the idle timeout). With an idle timeout of a minute, a new client is answered
    /// within its 10 s wait only if an idle connection makes room. The application runs as `serve`
    /// runs it: HummingbirdTesting's live server drops the connection cap.
    @Test func idleConnectionsGiveWayAtTheCap() async throws {
        var arguments = TestArguments()
        arguments.maxConnections = 5
        arguments.idleTimeout = .seconds(60)
        arguments.port = try await freePort()
        let port = arguments.port
        let application = try await buildApplication(arguments)
        let running = Task { try await application.runService() }
        defer { running.cancel() }
        let ask = "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
        let asked = "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        try #require(await waitUntil(.seconds(20), every: .milliseconds(50)) {
            (try? await rawExchange(port: port, asked, timeout: .seconds(1)))??.hasPrefix("HTTP/1.1 200") == true
        })

        // Each asks as it connects (one that sends nothing for a second at the cap gives way too).
        let idle = try (0..<5).map { _ in
            let connection = try KeptConnection(port: port)
            #expect(connection.ask(ask)?.hasPrefix("HTTP/1.1 200") == true)
            return connection
        }
        let newcomer = try await rawExchange(port: port, asked, timeout: .seconds(10))
        #expect(newcomer?.hasPrefix("HTTP/1.1 200") == true, "five idle connections kept a new one out: \(newcomer ?? "no answer")")
        let again = idle.map { $0.ask(ask)?.prefix(15) }
        #expect(again.count { $0 == nil } >= 1, "an idle one was closed to make room: \(again)")

        // Slow pingers: each asks again between newcomers.
        let pingers = try (0..<5).map { _ in try KeptConnection(port: port) }
        var answered = 0
        for _ in 0..<3 {
            for pinger in pingers { _ = pinger.ask(ask, timeout: .seconds(1)) }
            if try await rawExchange(port: port, asked, timeout: .seconds(10))?.hasPrefix("HTTP/1.1 200") == true { answered += 1 }
        }
        #expect(answered == 3, "slow pingers kept newcomers out")
    }

    /// Each user's order on a coupon, as stored.
    static func orders(_ couponID: Int64) async throws -> [String: String?] {
        var orders: [String: String?] = [:]
        let rows = try await TestDatabase.client.query(
            "SELECT user_id, order_id FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id IS NOT NULL")
        for try await (user, order) in rows.decode((String, String?).self) { orders[user] = order }
        return orders
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
            let lookup = "SELECT id, name, %FROM coupons WHERE id = $1"
            let (lookupsBefore, issuancesBefore) = (
                try await TestDatabase.statementsRun(databaseURL: url, matching: lookup),
                try await TestDatabase.statementsRun(databaseURL: url, matching: "%issue_tickets%")
            )
            for probe in 0..<50 {
                // Below the known id and above it: one read of each id the first time (a lower id may
                // commit after a higher one), then from memory.
                #expect(try await client.issue(known - 1 - Int64(probe % 2), "x").problemCode == "coupon_not_found")
                #expect(try await client.issue(known + 1_000 + Int64(probe % 5), "x").problemCode == "coupon_not_found")
            }
            // 100 answers: one read of the coupon for each of the 7 ids, none through the issuance queue
            // (counted by statement, so the instance's own background reads do not blur it).
            #expect(try await TestDatabase.statementsRun(databaseURL: url, matching: lookup) - lookupsBefore == 7)
            #expect(try await TestDatabase.statementsRun(databaseURL: url, matching: "%issue_tickets%") - issuancesBefore == 0)
            #expect(try await client.issue(known, "x").status == .created)
        }
    }
}
