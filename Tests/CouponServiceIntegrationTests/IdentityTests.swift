@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

/// With JWT identity on, a caller acts only as itself: every route that names a user, sent by the
/// user, by another user, by the checkout, by nobody and with forged tokens; the database shows
/// that a refusal wrote nothing.
@Suite(.migratedDatabase) struct IdentityTests {
    let identity: TestIdentity

    init() throws { identity = try TestIdentity() }

    /// Every ticket of the coupon and its holder's redemption, from the database.
    func held(_ couponID: Int64) async throws -> [String: String?] {
        let rows = try await TestDatabase.client.query(
            "SELECT user_id, order_id FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id IS NOT NULL")
        var held: [String: String?] = [:]
        for try await (user, order) in rows.decode((String, String?).self) { held[user] = order }
        return held
    }

    func expectConsistent(_ couponID: Int64, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let audit = try await TestDatabase.audit(couponID: couponID)
        #expect(audit.isConsistent, "\(audit)", sourceLocation: sourceLocation)
    }

    @Test func theTokenNamesWhoIsIssued() async throws {
        try await buildApplication(identity.arguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            let ann = try identity.token(for: "ann")
            let issue = "/v1/coupons/\(couponID)/issue"

            let first = try await client.send(.post, issue, bearer: ann)
            #expect(first.status == .created)
            #expect(try first.decode(TicketBody.self).user_id == "ann", "no body: the token's user")
            #expect(try await client.send(.post, issue, json: "{}", bearer: ann).status == .ok)
            #expect(try await client.send(.post, issue, json: #"{"user_id":"ann"}"#, bearer: ann).status == .ok)
            let other = try await client.send(.post, issue, json: #"{"user_id":"victim"}"#, bearer: ann)
            #expect(other.status == .forbidden && other.problemCode == "forbidden")
            let anonymous = try await client.send(.post, issue, json: #"{"user_id":"victim"}"#)
            #expect(anonymous.status == .unauthorized && anonymous.problemCode == "invalid_token")
            #expect(anonymous.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
            let lowercase = try await client.execute(
                uri: issue, method: .post, headers: [.authorization: "bearer \(try identity.token(for: "bob"))"])
            #expect(lowercase.status == .created, "the scheme is case-insensitive")
            let checkout = try await client.send(.post, issue, json: #"{"user_id":"carol"}"#, bearer: TestArguments.checkoutToken)
            #expect(checkout.status == .forbidden, "the checkout issues nothing")
            let admin = try await client.send(.post, issue, json: #"{"user_id":"carol"}"#, admin: true)
            #expect(admin.status == .unauthorized, "the admin token is not a user's token")

            #expect(try await held(couponID) == ["ann": nil, "bob": nil], "refusals wrote nothing")
            try await expectConsistent(couponID)
        }
    }

    /// `Bearer`, one or more spaces, the token and nothing else (the red team's combining mark after
    /// the scheme was swallowed with the space, and the token accepted).
    @Test func aBearerCredentialIsTheSchemeSpacesAndTheTokenAlone() async throws {
        try await buildApplication(identity.arguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            let issue = "/v1/coupons/\(couponID)/issue"
            let token = try identity.token(for: "ann")
            for header in ["Bearer \u{301}\(token)", "Bearer\u{301} \(token)", "Bearer\t\(token)", "Bearer \(token) x", "Bearer \(token),",
                           "Bearer \u{A0}\(token)", "Bearer\(token)", "Bearer \(token)\u{200B}", "Bearer  \(token)=x"] {
                let answer = try await client.execute(uri: issue, method: .post, headers: [.authorization: header])
                #expect(answer.status == .unauthorized && answer.problemCode == "invalid_token", "\(header.unicodeScalars.prefix(12))")
            }
            #expect(try await held(couponID) == [:], "nothing issued")
            let spaces = try await client.execute(uri: issue, method: .post, headers: [.authorization: "BEARER   \(token)"])
            #expect(spaces.status == .created, "spaces after the scheme, any case")
            #expect(try await held(couponID) == ["ann": nil])
        }
    }

    @Test func forgedAndBrokenTokensGet401AndWriteNothing() async throws {
        try await buildApplication(identity.arguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            #expect(try await client.issue(couponID, "victim").status == .unauthorized)
            let claims = TestIdentity.claims(for: "victim")
            let now = Int(Date().timeIntervalSince1970)
            let stranger = try TestSigner(.es256, kid: identity.es256.kid)
            let good = try identity.es256.token(claims).split(separator: ".")
            let tokens = [
                try stranger.token(claims),
                try identity.es256.token(claims, header: ["kid": "unknown"]),
                good[0] + "." + good[1] + ".",
                try TestSigner.encode(["alg": "none", "kid": identity.es256.kid]) + "." + good[1] + ".",
                try identity.eddsa.token(claims.merging(["exp": now - 120]) { $1 }),
                try identity.rs256.token(claims.merging(["nbf": now + 120]) { $1 }),
                try identity.es256.token(claims.merging(["iss": "https://evil.example"]) { $1 }),
                try identity.es256.token(claims.merging(["aud": "elsewhere"]) { $1 }),
                "not.a.jwt", "%%%", String(repeating: "a", count: 9000),
                TestArguments.adminToken,
            ]
            let routes: [(HTTPRequest.Method, String, String?)] = [
                (.post, "/v1/coupons/\(couponID)/issue", #"{"user_id":"victim"}"#),
                (.get, "/v1/coupons/\(couponID)/tickets/victim", nil),
                (.post, "/v1/coupons/\(couponID)/tickets/victim/redemption", #"{"order_id":"o-1"}"#),
                (.delete, "/v1/coupons/\(couponID)/tickets/victim/redemption?order_id=o-1", nil),
                (.get, "/v1/users/victim/tickets", nil),
            ]
            for (method, uri, body) in routes {
                for token in tokens {
                    let response = try await client.send(method, uri, json: body, bearer: token)
                    #expect(response.status == .unauthorized && response.problemCode == "invalid_token", "\(method) \(uri)")
                    #expect(response.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
                }
            }
            #expect(try await held(couponID).isEmpty, "nothing was issued")
            try await expectConsistent(couponID)
        }
    }

    @Test func onlyTheHolderOrTheCheckoutTouchesATicket() async throws {
        try await buildApplication(identity.arguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            let victim = try identity.rs256.token(TestIdentity.claims(for: "victim"))
            let attacker = try identity.eddsa.token(TestIdentity.claims(for: "attacker"))
            #expect(try await client.send(.post, "/v1/coupons/\(couponID)/issue", bearer: victim).status == .created)
            #expect(try await client.send(.post, "/v1/coupons/\(couponID)/issue", bearer: attacker).status == .created)
            let ticket = "/v1/coupons/\(couponID)/tickets/victim"
            let redeem = #"{"order_id":"attacker-order"}"#

            for (method, uri, body) in [
                (HTTPRequest.Method.get, ticket, nil), (.post, ticket + "/redemption", redeem),
                (.delete, ticket + "/redemption?order_id=attacker-order", nil), (.get, "/v1/users/victim/tickets", nil),
                (.get, "/v1/users/Victim/tickets", nil),
            ] {
                let response = try await client.send(method, uri, json: body, bearer: attacker)
                #expect(response.status == .forbidden && response.problemCode == "forbidden", "\(method) \(uri)")
            }
            #expect(try await held(couponID) == ["victim": nil, "attacker": nil], "the attacker redeemed nothing")

            #expect(try await client.send(.get, ticket, bearer: victim).status == .ok)
            #expect(try await client.send(.get, "/v1/users/victim/tickets", bearer: victim).status == .ok)
            let checkout = TestArguments.checkoutToken
            #expect(try await client.send(.get, ticket, bearer: checkout).status == .ok)
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-1"}"#, bearer: checkout).status == .created)
            let lateCancel = try await client.send(.delete, ticket + "/redemption?order_id=o-2", bearer: victim)
            #expect(lateCancel.status == .conflict && lateCancel.problemCode == "other_order")
            #expect(try await held(couponID)["victim"] == "o-1", "another order's cancel undid nothing")
            #expect(try await client.send(.delete, ticket + "/redemption", bearer: checkout).status == .badRequest)
            #expect(try await client.send(.delete, ticket + "/redemption?order_id=o-1", bearer: checkout).status == .ok)
            #expect(try await held(couponID)["victim"] == .some(nil))
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-3"}"#, bearer: victim).status == .created)
            #expect(try await held(couponID) == ["victim": "o-3", "attacker": nil])

            let adminRoute = try await client.send(.get, "/v1/coupons/\(couponID)/tickets", bearer: victim)
            #expect(adminRoute.status == .unauthorized, "a user's JWT is not the admin token")
            #expect(try await client.send(.delete, ticket, bearer: checkout).status == .unauthorized, "nor is the checkout's")
            try await expectConsistent(couponID)
        }
    }

    /// By code: the holder's token finds and changes only the holder's ticket (another user's code is
    /// 404, as if it did not exist); the checkout reaches any; no token or a forged one is 401.
    @Test func byCodeOnlyTheHolderOrTheCheckout() async throws {
        try await buildApplication(identity.arguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            let victim = try identity.rs256.token(TestIdentity.claims(for: "victim"))
            let attacker = try identity.eddsa.token(TestIdentity.claims(for: "attacker"))
            let issued = try await client.send(.post, "/v1/coupons/\(couponID)/issue", bearer: victim)
            let code = try issued.decode(TicketBody.self).ticket.code
            #expect(try await client.send(.post, "/v1/coupons/\(couponID)/issue", bearer: attacker).status == .created)
            let ticket = "/v1/tickets/\(code)"
            let hold = #"{"order_id":"attacker-order","hold_seconds":600}"#
            let routes: [(HTTPRequest.Method, String, String?)] = [
                (.get, ticket, nil), (.post, ticket + "/redemption", hold), (.post, ticket + "/redemption", #"{"order_id":"attacker-order"}"#),
                (.delete, ticket + "/redemption?order_id=attacker-order", nil),
            ]
            for (method, uri, body) in routes {
                let response = try await client.send(method, uri, json: body, bearer: attacker)
                #expect(response.status == .notFound && response.problemCode == "ticket_not_found", "\(method) \(uri)")
                for token in [nil, "not.a.jwt", try TestSigner(.es256, kid: identity.es256.kid).token(TestIdentity.claims(for: "victim"))] {
                    #expect(try await client.send(method, uri, json: body, bearer: token).problemCode == "invalid_token", "\(method) \(uri)")
                }
            }
            #expect(try await held(couponID) == ["victim": nil, "attacker": nil], "the attacker held nothing")

            #expect(try await client.send(.get, ticket, bearer: victim).status == .ok)
            let checkout = TestArguments.checkoutToken
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-1","hold_seconds":60}"#, bearer: checkout).status == .created)
            // The attacker knows the victim's order too: its cancel finds no ticket, the hold stays.
            #expect(try await client.send(.delete, ticket + "/redemption?order_id=o-1", bearer: attacker).problemCode == "ticket_not_found")
            #expect(try await held(couponID)["victim"] == "o-1")
            // A lapsed hold of the victim's, read by the attacker: 404, nothing cleared, nothing counted.
            try await TestDatabase.client.query(
                "UPDATE coupon_tickets SET hold_until = clock_timestamp() WHERE coupon_id = \(couponID) AND user_id = 'victim'")
            #expect(try await client.send(.get, ticket, bearer: attacker).problemCode == "ticket_not_found")
            #expect(try await held(couponID)["victim"] == "o-1", "the lapsed hold's columns stay for the holder's next request")
            #expect(try await client.metric("coupon_holds_lapsed_total") == 0)
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-1","hold_seconds":60}"#, bearer: victim).status == .created)
            #expect(try await client.metric("coupon_holds_lapsed_total") == 1, "the holder's hold met the lapse")
            #expect(try await client.send(.get, ticket, bearer: checkout).status == .ok)
            #expect(try await client.send(.delete, ticket + "/redemption?order_id=o-2", bearer: victim).problemCode == "other_order")
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-1"}"#, bearer: victim).status == .ok)
            #expect(try await held(couponID) == ["victim": "o-1", "attacker": nil])
            try await expectConsistent(couponID)
        }
    }

    @Test func aRotatedKeyIsUsedWithoutARestart() async throws {
        try await buildApplication(identity.arguments()).test(.live) { client in
            let couponID = try await client.createCoupon(quantity: 10)
            let next = try TestSigner(.eddsa, kid: "ed-2")
            let token = try next.token(TestIdentity.claims(for: "dan"))
            let issue = "/v1/coupons/\(couponID)/issue"
            #expect(try await client.send(.post, issue, bearer: token).status == .unauthorized)
            try identity.publish([next])
            let issued = try await waitUntil(.seconds(20), every: .milliseconds(100)) {
                try await client.send(.post, issue, bearer: token).status == .created
            }
            #expect(issued, "the file is read again within seconds")
            #expect(
                try await client.send(.post, issue, bearer: try identity.token(for: "eve")).status == .unauthorized,
                "the key taken out of the file is refused")
            #expect(try await held(couponID) == ["dan": nil])
        }
    }

    @Test func aRestoreNamesItsOrderInTrustedModeToo() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 1)
            #expect(try await client.issue(couponID, "ann").status == .created)
            let ticket = "/v1/coupons/\(couponID)/tickets/ann"
            #expect(try await client.send(.post, ticket + "/redemption", json: #"{"order_id":"o-1"}"#).status == .created)
            #expect(try await client.send(.delete, ticket + "/redemption").problemCode == "invalid_request")
            #expect(try await client.send(.delete, ticket + "/redemption?order_id=o-2").problemCode == "other_order")
            #expect(try await held(couponID) == ["ann": "o-1"])
            #expect(try await client.send(.delete, ticket + "/redemption?order_id=o-1").status == .ok)
            #expect(try await held(couponID) == ["ann": String?.none])
            let noUser = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: "{}")
            #expect(noUser.problemCode == "invalid_request", "trusted mode: the body names the user")
            try await expectConsistent(couponID)
        }
    }
}
