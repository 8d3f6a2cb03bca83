@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

/// Checkout by code: a ticket found by its code, held for an order with a time limit, confirmed,
/// restored or lapsing by itself on the database's clock; the races between orders, holds, lapses
/// and returns, each ended by the database's state and the audit.
@Suite(.migratedDatabase) struct CheckoutTests {
    struct CheckoutBody: Decodable, Equatable {
        struct Ticket: Decodable, Equatable {
            var number: Int
            var code: String
        }
        var coupon_id: Int64
        var user_id: String
        var ticket: Ticket
        var state: String
        var order_id: String?
        var redeemed_at: String?
        var hold_until: String?
    }

    /// The checkout columns of a ticket as stored, lapsed holds included.
    struct Stored: Equatable {
        var orderID: String?
        var redeemed: Bool
        var holdUntil: Date?
    }

    func stored(_ couponID: Int64, _ user: String) async throws -> Stored? {
        let rows = try await TestDatabase.client.query(
            "SELECT order_id, redeemed_at IS NOT NULL, hold_until FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id = \(user)")
        for try await (order, redeemed, until) in rows.decode((String?, Bool, Date?).self) {
            return Stored(orderID: order, redeemed: redeemed, holdUntil: until)
        }
        return nil
    }

    /// Moves a hold's end to the database's present: the hold has lapsed, as if its seconds had passed.
    func lapse(_ couponID: Int64, _ user: String) async throws {
        try await TestDatabase.client.query(
            """
            UPDATE coupon_tickets SET hold_until = clock_timestamp() - interval '1 millisecond'
            WHERE coupon_id = \(couponID) AND user_id = \(user) AND hold_until IS NOT NULL
            """)
    }

    func checkout(
        _ client: some TestClientProtocol, _ code: String, order: String, hold: Int? = nil, bearer: String? = nil
    ) async throws -> TestResponse {
        let body = hold.map { #"{"order_id":"\#(order)","hold_seconds":\#($0)}"# } ?? #"{"order_id":"\#(order)"}"#
        return try await client.send(.post, "/v1/tickets/\(code)/redemption", json: body, bearer: bearer)
    }

    func cancel(_ client: some TestClientProtocol, _ code: String, order: String) async throws -> TestResponse {
        try await client.send(.delete, "/v1/tickets/\(code)/redemption?order_id=\(order)")
    }

    func issuedCode(_ client: some TestClientProtocol, _ couponID: Int64, _ user: String) async throws -> String {
        let issued = try await client.issue(couponID, user)
        try #require(issued.status == .created)
        return try issued.decode(TicketBody.self).ticket.code
    }

    func expectConsistent(_ couponID: Int64, issued: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let audit = try await TestDatabase.audit(couponID: couponID)
        #expect(audit.isConsistent, "\(audit)", sourceLocation: sourceLocation)
        #expect(audit.issuedCount == issued, "\(audit)", sourceLocation: sourceLocation)
    }

    @Test func aCodeCarriesItsCouponAndFindsItsTicket() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 2)
            let code = try await issuedCode(client, couponID, "ann")
            #expect(code.hasPrefix("\(couponID)-") && TicketStore.Code(code) == .ofCoupon(couponID, code))
            #expect(try await TestDatabase.heldCode(couponID: couponID, userID: "ann") == code)

            let found = try await client.send(.get, "/v1/tickets/\(code)")
            #expect(found.status == .ok)
            let body = try found.decode(CheckoutBody.self)
            #expect(body.coupon_id == couponID && body.user_id == "ann" && body.ticket.code == code && body.state == "issued")
            #expect(body.order_id == nil && body.hold_until == nil && body.redeemed_at == nil)

            let free = try #require(try await freeCode(couponID))
            let hex = String(code.split(separator: "-")[1])
            let strangers = [free, "\(couponID + 1)-\(hex)", "\(couponID)-\(String(hex.reversed()))", "nonsense", "\(couponID)-",
                             String(repeating: "9", count: 30) + "-\(hex)", code.uppercased()]
            for stranger in strangers {
                let answer = try await client.send(.get, "/v1/tickets/\(stranger)")
                #expect(answer.status == .notFound && answer.problemCode == "ticket_not_found", "\(stranger)")
                #expect(try await checkout(client, stranger, order: "o").problemCode == "ticket_not_found", "\(stranger)")
                #expect(try await cancel(client, stranger, order: "o").problemCode == "ticket_not_found", "\(stranger)")
            }
            #expect(try await client.send(.put, "/v1/tickets/\(code)").status == .methodNotAllowed)
            #expect(try await client.send(.get, "/v1/tickets/\(code)/redemption").status == .methodNotAllowed)
            #expect(try await stored(couponID, "ann") == Stored(orderID: nil, redeemed: false, holdUntil: nil), "nothing written")
            try await expectConsistent(couponID, issued: 1)
        }
    }

    /// A free ticket's code, never handed out.
    func freeCode(_ couponID: Int64) async throws -> String? {
        let rows = try await TestDatabase.client.query(
            "SELECT code FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id IS NULL LIMIT 1")
        for try await code in rows.decode(String.self) { return code }
        return nil
    }

    /// Codes handed out before they carried their coupon (32 hex digits alone) keep working, by the
    /// index of bare codes; a returned ticket's old code finds nothing.
    @Test func aCodeOfBeforeKeepsWorkingAndAReturnedCodeDoesNot() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 2)
            _ = try await issuedCode(client, couponID, "ann")
            let bare = "0123456789abcdef0123456789abcdef".shuffled().map(String.init).joined()
            try await TestDatabase.client.query(
                "UPDATE coupon_tickets SET code = \(bare) WHERE coupon_id = \(couponID) AND user_id = 'ann'")
            let found = try await client.send(.get, "/v1/tickets/\(bare)")
            #expect(found.status == .ok)
            #expect(try found.decode(CheckoutBody.self).user_id == "ann")
            let held = try await checkout(client, bare, order: "o-1", hold: 60)
            #expect(held.status == .created)
            #expect(try held.decode(CheckoutBody.self).state == "held")
            #expect(try await checkout(client, bare, order: "o-1").status == .ok, "confirmed by the old code")
            #expect(try await stored(couponID, "ann")?.redeemed == true)
            #expect(try await cancel(client, bare, order: "o-1").status == .ok)

            let bob = try await issuedCode(client, couponID, "bob")
            #expect(try await client.send(.delete, "/v1/coupons/\(couponID)/tickets/bob", admin: true).status == .noContent)
            #expect(try await client.send(.get, "/v1/tickets/\(bob)").problemCode == "ticket_not_found", "the old code of a returned ticket")
            #expect(try await checkout(client, bob, order: "o-2").problemCode == "ticket_not_found")
            try await expectConsistent(couponID, issued: 1)
        }
    }

    @Test func aHoldIsPlacedRepeatedConfirmedAndRestored() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            let code = try await issuedCode(client, couponID, "ann")

            let placed = try await checkout(client, code, order: "o-1", hold: 600)
            #expect(placed.status == .created)
            let hold = try placed.decode(CheckoutBody.self)
            #expect(hold.state == "held" && hold.order_id == "o-1" && hold.hold_until != nil && hold.redeemed_at == nil)
            let until = try #require(try await stored(couponID, "ann")?.holdUntil)
            #expect(until.timeIntervalSince(try await databaseNow()) > 590, "hold_until is the database's clock plus the seconds")
            let repeated = try await checkout(client, code, order: "o-1", hold: 30)
            #expect(repeated.status == .ok)
            #expect(try repeated.decode(CheckoutBody.self) == hold, "the order's repeat keeps its hold as it was")
            #expect(try await client.send(.get, "/v1/tickets/\(code)").decode(CheckoutBody.self) == hold)
            #expect(try await client.send(.get, "/v1/coupons/\(couponID)/tickets/ann").decode(CheckoutBody.self) == hold)

            let other = try await checkout(client, code, order: "o-2")
            #expect(other.status == .conflict && other.problemCode == "ticket_held")
            #expect(try await checkout(client, code, order: "o-2", hold: 5).problemCode == "ticket_held")
            #expect(try await cancel(client, code, order: "o-2").problemCode == "other_order")
            #expect(
                try await client.send(.delete, "/v1/coupons/\(couponID)/tickets/ann", admin: true).problemCode == "ticket_held",
                "a held ticket does not go back to the pool")
            #expect(try await stored(couponID, "ann") == Stored(orderID: "o-1", redeemed: false, holdUntil: until), "refusals wrote nothing")

            let released = try await cancel(client, code, order: "o-1")
            #expect(released.status == .ok)
            #expect(try released.decode(CheckoutBody.self).state == "issued")
            #expect(try await stored(couponID, "ann") == Stored(orderID: nil, redeemed: false, holdUntil: nil))
            #expect(try await cancel(client, code, order: "o-1").status == .ok, "idempotent")

            #expect(try await checkout(client, code, order: "o-2", hold: 60).status == .created, "free again for any order")
            let confirmed = try await checkout(client, code, order: "o-2")
            #expect(confirmed.status == .ok)
            let redeemed = try confirmed.decode(CheckoutBody.self)
            #expect(redeemed.state == "redeemed" && redeemed.order_id == "o-2" && redeemed.redeemed_at != nil && redeemed.hold_until == nil)
            #expect(try await checkout(client, code, order: "o-2").status == .ok, "the confirmation repeated")
            #expect(try await checkout(client, code, order: "o-2", hold: 60).decode(CheckoutBody.self) == redeemed)
            #expect(try await checkout(client, code, order: "o-3", hold: 60).problemCode == "already_redeemed")
            #expect(try await stored(couponID, "ann") == Stored(orderID: "o-2", redeemed: true, holdUntil: nil))

            #expect(try await client.metric("coupon_holds_placed_total") == 2)
            #expect(try await client.metric("coupon_holds_confirmed_total") == 1)
            #expect(try await client.metric("coupon_redemptions_total") == 1)
            #expect(try await client.metric("coupon_holds_lapsed_total") == 0)
            for bad in [#"{"order_id":"o-4","hold_seconds":0}"#, #"{"order_id":"o-4","hold_seconds":86401}"#,
                        #"{"order_id":"o-4","hold_seconds":"9"}"#, #"{"hold_seconds":9}"#] {
                #expect(try await client.send(.post, "/v1/tickets/\(code)/redemption", json: bad).status == .badRequest, "\(bad)")
            }
            try await expectConsistent(couponID, issued: 1)
        }
    }

    func databaseNow() async throws -> Date {
        for try await now in try await TestDatabase.client.query("SELECT clock_timestamp()").decode(Date.self) { return now }
        throw TestSetupError("no clock")
    }

    /// A hold of one second, on the database's clock: it is answered as held, then (nothing run in
    /// between) reads as issued everywhere; another order takes it, and the lapse is counted once.
    @Test func aHoldLapsesByItselfOnTheDatabasesClock() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            let code = try await issuedCode(client, couponID, "ann")
            // The hold's own answer says held; a GET here could already find it lapsed (one second, under load),
            // and would clear it. Other tests read a longer hold back as held.
            let held = try await checkout(client, code, order: "o-1", hold: 1)
            #expect(held.status == .created)
            #expect(try held.decode(CheckoutBody.self).state == "held")
            let until = try #require(try await stored(couponID, "ann")?.holdUntil)
            while try await databaseNow() <= until { try await Task.sleep(for: .milliseconds(50)) }

            #expect(try await stored(couponID, "ann")?.orderID == "o-1", "nothing swept it: the columns stay")
            let listing = try await client.send(.get, "/v1/users/ann/tickets")
            #expect(String(buffer: listing.body).contains(#""state":"issued""#), "the listing judges it lapsed too")
            let lapsed = try await client.send(.get, "/v1/tickets/\(code)").decode(CheckoutBody.self)
            #expect(lapsed.state == "issued" && lapsed.order_id == nil && lapsed.hold_until == nil)
            #expect(try await stored(couponID, "ann") == Stored(orderID: nil, redeemed: false, holdUntil: nil), "the reader cleared it")
            #expect(try await client.send(.get, "/v1/tickets/\(code)").decode(CheckoutBody.self) == lapsed)
            #expect(try await client.metric("coupon_holds_lapsed_total") == 1, "counted once, when first seen")

            #expect(try await checkout(client, code, order: "o-2").status == .created, "any order may redeem it")
            #expect(try await stored(couponID, "ann")?.orderID == "o-2")
            try await expectConsistent(couponID, issued: 1)
        }
    }

    /// A lapsed hold met by a write is cleared there and counted there; a confirmation that comes too
    /// late finds the ticket free and redeems it like any order; a hold past redeem_until cannot be confirmed.
    @Test func aLapsedHoldMetByAWriteAndRedeemUntil() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 3)
            let ann = try await issuedCode(client, couponID, "ann")
            #expect(try await checkout(client, ann, order: "o-1", hold: 60).status == .created)
            try await lapse(couponID, "ann")
            let taken = try await checkout(client, ann, order: "o-2", hold: 60)
            #expect(taken.status == .created)
            #expect(try taken.decode(CheckoutBody.self).order_id == "o-2")
            #expect(try await client.metric("coupon_holds_lapsed_total") == 1)
            #expect(try await cancel(client, ann, order: "o-1").problemCode == "other_order", "o-1's hold is gone")
            try await lapse(couponID, "ann")
            #expect(try await cancel(client, ann, order: "o-2").status == .ok, "a lapsed hold: nothing to undo")
            #expect(try await client.metric("coupon_holds_lapsed_total") == 2)
            #expect(try await checkout(client, ann, order: "o-3", hold: 60).status == .created)
            try await lapse(couponID, "ann")
            #expect(try await client.send(.delete, "/v1/coupons/\(couponID)/tickets/ann", admin: true).status == .noContent)
            #expect(try await client.metric("coupon_holds_lapsed_total") == 3)

            let bob = try await issuedCode(client, couponID, "bob")
            #expect(try await checkout(client, bob, order: "o-4", hold: 60).status == .created)
            try await TestDatabase.client.query("UPDATE coupons SET redeem_until = clock_timestamp() WHERE id = \(couponID)")
            #expect(try await checkout(client, bob, order: "o-4").problemCode == "redemption_closed", "too late to confirm")
            #expect(try await checkout(client, bob, order: "o-5", hold: 60).problemCode == "ticket_held")
            try await lapse(couponID, "bob")
            #expect(try await checkout(client, bob, order: "o-4").problemCode == "redemption_closed", "a lapsed hold after redeem_until")
            #expect(try await checkout(client, bob, order: "o-5", hold: 60).problemCode == "redemption_closed")
            #expect(try await stored(couponID, "bob") == Stored(orderID: nil, redeemed: false, holdUntil: nil))
            #expect(try await client.metric("coupon_redemptions_total") == 0)
            try await expectConsistent(couponID, issued: 1)
        }
    }

    /// 200 holds of one ticket at once for 10 orders: one order holds it, its other calls are its
    /// repeats, every other order is refused.
    @Test(.heavy) func concurrentHoldsPickOneOrder() async throws {
        // A 60 s deadline, as concurrentRedemptionsPickOneOrder (503s past 10 s once, beside every suite).
        try await buildApplication(TestArguments(databaseTimeout: .seconds(60))).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            let code = try await issuedCode(client, couponID, "ann")
            let answers = try await withThrowingTaskGroup(of: (String, HTTPResponse.Status, String?, String?).self) { group in
                for call in 0..<200 {
                    let order = "order-\(call % 10)"
                    group.addTask {
                        let response = try await checkout(client, code, order: order, hold: 600)
                        return (order, response.status, try? response.decode(CheckoutBody.self).hold_until, response.problemCode)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let winners = Set(answers.filter { $0.1 == .created || $0.1 == .ok }.map(\.0))
            #expect(winners.count == 1, "one order holds it: \(winners)")
            #expect(answers.count { $0.1 == .created } == 1)
            #expect(answers.count { $0.1 == .ok } == 19, "the winning order's repeats")
            #expect(answers.count { $0.1 == .conflict && $0.3 == "ticket_held" } == 180)
            #expect(Set(answers.compactMap(\.2)).count == 1, "one hold_until")
            let held = try #require(try await stored(couponID, "ann"))
            #expect(held.orderID == winners.first && !held.redeemed && held.holdUntil != nil)
            #expect(try await client.metric("coupon_holds_placed_total") == 1)
            try await expectConsistent(couponID, issued: 1)
        }
    }

    /// A hold lapsing while its order confirms and another order redeems, many times: exactly one
    /// order redeems each ticket.
    @Test(.heavy) func aHoldLapsingWhileAnotherOrderRedeems() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let rounds = 20
            var bWins = 0
            let couponID = try await client.createCoupon(quantity: rounds)
            for round in 0..<rounds {
                let user = "u\(round)"
                let code = try await issuedCode(client, couponID, user)
                #expect(try await checkout(client, code, order: "a-\(round)", hold: 60).status == .created)
                // The hold ends 30 ms from now on the database's clock. In even rounds its order calls
                // from 15 ms (before the end), in odd ones from 40 ms, after the other order began at 20.
                var ends: Date?
                for try await until in try await TestDatabase.client.query(
                    """
                    UPDATE coupon_tickets SET hold_until = clock_timestamp() + interval '30 milliseconds'
                    WHERE coupon_id = \(couponID) AND user_id = \(user) RETURNING hold_until
                    """).decode(Date.self) { ends = until }
                let holdUntil = try #require(ends)
                let answers = try await withThrowingTaskGroup(of: (String, HTTPResponse.Status).self) { group in
                    for call in 0..<20 {
                        let holders = call.isMultiple(of: 2)
                        let order = holders ? "a-\(round)" : "b-\(round)"
                        let start = holders ? (round.isMultiple(of: 2) ? 15 : 40) : 20
                        group.addTask {
                            try await Task.sleep(for: .milliseconds(start + call / 2))
                            return (order, try await checkout(client, code, order: order).status)
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let redeemers = Set(answers.filter { $0.1 == .created || $0.1 == .ok }.map(\.0))
                #expect(redeemers.count == 1, "round \(round): \(answers)")
                #expect(answers.count { $0.1 == .created } <= 1)
                let state = try #require(try await stored(couponID, user))
                #expect(state.redeemed && state.orderID == redeemers.first && state.holdUntil == nil, "round \(round)")
                let redeemedAt = try #require(try await redeemedAt(couponID, user))
                if redeemers.first == "b-\(round)" {
                    bWins += 1
                    #expect(redeemedAt >= holdUntil, "round \(round): another order redeemed before the hold ended")
                }
            }
            #expect(bWins > 0, "the other order never won: the holds did not lapse while it called")
            #expect(try await client.metric("coupon_redemptions_total") == Double(rounds))
            try await expectConsistent(couponID, issued: rounds)
        }
    }

    func redeemedAt(_ couponID: Int64, _ user: String) async throws -> Date? {
        let rows = try await TestDatabase.client.query(
            "SELECT redeemed_at FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id = \(user)")
        for try await at in rows.decode(Date?.self) { return at }
        return nil
    }

    /// A lapsed hold met by 50 lookups and a hold at once: cleared once, counted once.
    @Test(.heavy) func aLapseIsCountedOnceWhoeverMeetsIt() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            let code = try await issuedCode(client, couponID, "ann")
            #expect(try await checkout(client, code, order: "o-1", hold: 60).status == .created)
            try await lapse(couponID, "ann")
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for call in 0..<51 {
                    group.addTask {
                        call == 25
                            ? try await checkout(client, code, order: "o-2", hold: 60).status
                            : try await client.send(.get, call.isMultiple(of: 2) ? "/v1/tickets/\(code)" : "/v1/coupons/\(couponID)/tickets/ann").status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.count { $0 == .ok } == 50 && statuses.count { $0 == .created } == 1)
            #expect(try await client.metric("coupon_holds_lapsed_total") == 1)
            #expect(try await stored(couponID, "ann")?.orderID == "o-2")
            try await expectConsistent(couponID, issued: 1)
        }
    }

    /// A hold cannot outlast the coupon's redeem_until: it ends there, since it could not be confirmed after.
    @Test func aHoldEndsAtRedeemUntil() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            let code = try await issuedCode(client, couponID, "ann")
            try await TestDatabase.client.query(
                "UPDATE coupons SET redeem_until = clock_timestamp() + interval '1 minute' WHERE id = \(couponID)")
            #expect(try await checkout(client, code, order: "o-1", hold: 3600).status == .created)
            var limits: [Date] = []
            for try await (until, redeemUntil) in try await TestDatabase.client.query(
                "SELECT t.hold_until, c.redeem_until FROM coupon_tickets t JOIN coupons c ON c.id = t.coupon_id WHERE c.id = \(couponID) AND t.user_id = 'ann'"
            ).decode((Date, Date).self) { limits = [until, redeemUntil] }
            #expect(limits.count == 2 && limits[0] == limits[1], "\(limits)")
        }
    }

    /// A return to the pool racing a hold, many times: the ticket ends returned or held, never both.
    @Test(.heavy) func aReturnRacingAHold() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let rounds = 30
            let couponID = try await client.createCoupon(quantity: rounds)
            var returnedCount = 0
            for round in 0..<rounds {
                let user = "u\(round)"
                let code = try await issuedCode(client, couponID, user)
                async let held = checkout(client, code, order: "o-\(round)", hold: 600)
                async let returned = client.send(.delete, "/v1/coupons/\(couponID)/tickets/\(user)", admin: true)
                let (hold, back) = try await (held, returned)
                let codeRow = try await codeState(couponID, code)
                if back.status == .noContent {
                    returnedCount += 1
                    #expect(hold.problemCode == "ticket_not_found", "round \(round): returned, so nothing was held")
                    #expect(codeRow == nil, "round \(round): the old code is gone")
                    #expect(try await stored(couponID, user) == nil)
                } else {
                    #expect(back.problemCode == "ticket_held" && hold.status == .created, "round \(round)")
                    #expect(codeRow?.orderID == "o-\(round)" && codeRow?.userID == user, "round \(round)")
                }
            }
            try await expectConsistent(couponID, issued: rounds - returnedCount)
        }
    }

    func codeState(_ couponID: Int64, _ code: String) async throws -> (userID: String?, orderID: String?)? {
        let rows = try await TestDatabase.client.query(
            "SELECT user_id, order_id FROM coupon_tickets WHERE coupon_id = \(couponID) AND code = \(code)")
        for try await (user, order) in rows.decode((String?, String?).self) { return (user, order) }
        return nil
    }

    /// A lookup by code is one read of one index, with 100,000 coupons in the database: the
    /// (coupon_id, code) index for a code that carries its coupon; for a bare code of before, the index
    /// of bare codes (for its coupon) and then the same. Counted by PostgreSQL's statistics of the scratch
    /// database, on the one connection that does the lookups.
    @Test(.heavy) func aLookupByCodeIsOneIndexedRead() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await withPostgresClient(databaseURL: url, maximumConnections: 1, logger: TestDatabase.logger) { client in
                try await client.query(
                    """
                    INSERT INTO coupons (id, name, quantity, issued_count) OVERRIDING SYSTEM VALUE
                    SELECT n, 'c' || n, 3, 2 FROM generate_series(1, 100000) AS n
                    """)
                try await client.query(
                    """
                    INSERT INTO coupon_tickets (coupon_id, number, code, user_id, issued_at)
                    SELECT c, n, CASE WHEN c % 10 = 0 THEN '' ELSE c || '-' END || md5(c || ':' || n),
                           CASE WHEN n < 3 THEN 'u' || n END, CASE WHEN n < 3 THEN now() END
                    FROM generate_series(1, 100000) AS c, generate_series(1, 3) AS n
                    """)
                try await client.query("ANALYZE coupon_tickets")
                try await client.query("ANALYZE coupons")
                func code(_ couponID: Int, _ number: Int) async throws -> String {
                    let rows = try await client.query(
                        "SELECT code FROM coupon_tickets WHERE coupon_id = \(couponID) AND number = \(number)")
                    for try await code in rows.decode(String.self) { return code }
                    throw TestSetupError("no ticket \(couponID)/\(number)")
                }
                let carried = try await code(77_777, 1)
                let bare = try await code(70_000, 2)
                /// The scans each index of coupon_tickets (and the table itself, `seq`) counted so far.
                func scans() async throws -> [String: Int] {
                    try await client.query("SELECT pg_stat_force_next_flush()")
                    var scans: [String: Int] = [:]
                    let rows = try await client.query(
                        """
                        SELECT indexrelname::text, idx_scan::int FROM pg_stat_user_indexes WHERE relname = 'coupon_tickets'
                        UNION ALL SELECT 'seq', seq_scan::int FROM pg_stat_user_tables WHERE relname = 'coupon_tickets'
                        """)
                    for try await (name, count) in rows.decode((String, Int).self) { scans[name] = count }
                    return scans
                }
                let tickets = TicketStore(database: .running(client, url: url), metrics: CouponMetrics())
                // Anyone's ticket (the checkout, trusted mode), and only its holder's (a user's token).
                // With the holder named, the (coupon_id, user_id) index may find the same one row.
                let expected: [(String, [[String: Int]], String?)] = [
                    (carried, [["coupon_tickets_code_unique": 1]], nil),
                    (carried, [["coupon_tickets_code_unique": 1], ["coupon_tickets_user_unique": 1]], "u1"),
                    (bare, [["coupon_tickets_bare_code": 1, "coupon_tickets_code_unique": 1]], nil),
                    (bare, [["coupon_tickets_bare_code": 1, "coupon_tickets_code_unique": 1],
                            ["coupon_tickets_bare_code": 1, "coupon_tickets_user_unique": 1]], "u2"),
                ]
                for (text, reads, holder) in expected {
                    let code = try #require(TicketStore.Code(text))
                    let before = try await scans()
                    let found = try await tickets.record(try #require(try await tickets.key(of: code, holder: holder)))
                    let after = try await scans()
                    let read = after.filter { $0.value != before[$0.key] }.reduce(into: [String: Int]()) { $0[$1.key] = $1.value - (before[$1.key] ?? 0) }
                    #expect(reads.contains(read), "\(text), holder \(holder ?? "none"): \(read)")
                    #expect(found?.ticket.code == text && found?.state == .issued)
                    if let holder {
                        #expect(found?.ticket.userID == holder)
                        #expect(try await tickets.record(try #require(try await tickets.key(of: code, holder: holder + "x"))) == nil)
                    }
                }
            }
        }
    }
}
