@testable import CouponService
import CouponTestSupport
import Foundation
import Testing

@Suite struct RequestParserTests {
    func problem(_ body: () throws -> Void) -> CouponProblem? {
        do { try body(); return nil } catch { return error as? CouponProblem }
    }

    @Test func acceptsAValidCoupon() throws {
        let coupon = try RequestParser.newCoupon(
            from: Data(#"{"name":" Black Friday ","quantity":1000,"starts_at":"2026-11-27T09:00:00+09:00","ends_at":"2026-11-28T00:00:00.5Z"}"#.utf8))
        #expect(coupon.name == "Black Friday")
        #expect(coupon.quantity == 1000)
        #expect(coupon.startsAt == Date(timeIntervalSince1970: 1_795_737_600))
        #expect(coupon.endsAt == Date(timeIntervalSince1970: 1_795_824_000.5))
    }

    @Test(arguments: [
        (#"{"quantity":10}"#, "'name' is required"),
        (#"{"name":"","quantity":10}"#, "'name' must be 1 to"),
        (#"{"name":"a\u0007b","quantity":10}"#, "control characters"),
        (#"{"name":"x","quantity":0}"#, "'quantity' must be an integer from 1"),
        (#"{"name":"x","quantity":1000001}"#, "'quantity' must be an integer from 1"),
        (#"{"name":"x","quantity":"10"}"#, "'quantity' must be an integer"),
        (#"{"name":"x","quantity":1.5}"#, "field 'quantity'"),
        (#"{"name":"x","quantity":99999999999999999999}"#, "field 'quantity'"),
        (#"{"name":"x","quantity":null}"#, "'quantity' must not be null"),
        (#"{"name":"x","quantity":5,"starts_at":"tomorrow"}"#, "'starts_at' must be an RFC 3339"),
        (#"{"name":"x","quantity":5,"ends_at":"2026-11-24 10:00"}"#, "'ends_at' must be an RFC 3339"),
        (#"{"name":"x","quantity":5,"starts_at":"2026-11-25T00:00:00Z","ends_at":"2026-11-24T00:00:00Z"}"#, "'ends_at' must be after"),
        (#"[1,2]"#, "must be a JSON object"),
        (#"{"name":"x","#, "must be a JSON object"),
        ("", "must be a JSON object"),
    ])
    func refusesABadCoupon(body: String, detail: String) {
        let problem = problem { _ = try RequestParser.newCoupon(from: Data(body.utf8)) }
        #expect(problem?.code == "invalid_request")
        #expect(problem?.status == .badRequest)
        #expect(problem?.detail.contains(detail) == true, "\(problem?.detail ?? "no problem")")
    }

    @Test(arguments: ["u1", "a", String(repeating: "x", count: 64), "user.name_1:tenant@example-org"])
    func acceptsUserIDs(_ userID: String) throws {
        #expect(try RequestParser.issueUser(from: Data(#"{"user_id":"\#(userID)"}"#.utf8)) == userID)
    }

    @Test(arguments: ["", String(repeating: "x", count: 65), "a b", "ü", "a/b", "a\\u0000b", "a\\nb", "<script>"])
    func refusesUserIDs(_ userID: String) {
        let problem = problem { _ = try RequestParser.issueUser(from: Data(#"{"user_id":"\#(userID)"}"#.utf8)) }
        #expect(problem?.code == "invalid_request")
        #expect(problem?.detail.contains("user_id") == true)
    }

    @Test func refusesAMissingOrMistypedUserID() throws {
        // A token can name the user instead (UserAccess.Caller.issuingUser refuses it in trusted mode).
        #expect(try RequestParser.issueUser(from: Data("{}".utf8)) == nil)
        #expect(try RequestParser.issueUser(from: Data()) == nil)
        #expect(problem { _ = try RequestParser.issueUser(from: Data(#"{"user_id":7}"#.utf8)) }?.detail
            == "field 'user_id' must be a string")
        // null names no one: not the token's user either (schemathesis' stateful phase found it accepted).
        #expect(problem { _ = try RequestParser.issueUser(from: Data(#"{"user_id":null}"#.utf8)) }?.code == "invalid_request")
    }

    @Test(arguments: ["0", "-1", "abc", "1.5", "+5", " 5", "9223372036854775808", "99999999999999999999", "0x10", ""])
    func refusesCouponIDs(_ text: String) {
        #expect(problem { _ = try RequestParser.couponID(text) }?.code == "invalid_request")
    }

    @Test func acceptsCouponIDs() throws {
        #expect(try RequestParser.couponID("1") == 1)
        #expect(try RequestParser.couponID("9223372036854775807") == Int64.max)
    }

    /// The decoder-free path answers only bodies it reads exactly as the decoder would; each body's
    /// answer is written out (nil: refused), not computed by the rule under test.
    @Test(arguments: [
        (#"{"user_id":"alice"}"#, "alice", true), (#"{"user_id":"a.b_c:d@e-f"}"#, "a.b_c:d@e-f", true),
        (#"{ "user_id":"alice"}"#, "alice", false), (#"{"user_id":"al\u0069ce"}"#, "alice", false),
        (#"{"user_id":"alice","pad":"x"}"#, "alice", false), (#"{"user_id":""}"#, nil, false),
        (#"{"user_id":"a b"}"#, nil, false), (#"{"user_id":"é"}"#, nil, false),
        (#"{"user_id":"\#(String(repeating: "x", count: 65))"}"#, nil, false),
        (#"{"user_id":"\#(String(repeating: "x", count: 64))"}"#, String(repeating: "x", count: 64), true),
        (#"{"user_id":"x"}}"#, nil, false), (#"{"user_id":"x""#, nil, false),
    ] as [(String, String?, Bool)])
    func theFastPathAgreesWithTheDecoder(_ body: String, user: String?, fast: Bool) {
        let data = Data(body.utf8)
        #expect(RequestParser.plainUserID(in: data) == (fast ? user : nil), "the fast path takes only the plain body")
        #expect((try? RequestParser.issueUser(from: data)) == user)
    }

    @Test func theFastPathTakesThePlainBody() {
        #expect(RequestParser.plainUserID(in: Data(#"{"user_id":"alice"}"#.utf8)) == "alice")
        #expect(RequestParser.plainUserID(in: Data(#"{"user_id" :"alice"}"#.utf8)) == nil)
    }

    @Test func aChangeNamesTheQuantityTheDeadlineOrBoth() throws {
        func change(_ body: String) throws -> CouponChange { try RequestParser.couponChange(from: Data(body.utf8)) }
        #expect(try change(#"{"quantity":5}"#) == CouponChange(quantity: 5, redeemUntil: nil))
        #expect(try change(#"{"redeem_until":null}"#) == CouponChange(quantity: nil, redeemUntil: .some(nil)))
        #expect(try change(#"{"quantity":2,"redeem_until":"2026-12-01T00:00:00Z"}"#)
            == CouponChange(quantity: 2, redeemUntil: .some(Date(timeIntervalSince1970: 1_796_083_200))))
        for bad in ["{}", #"{"other":1}"#, #"{"quantity":null}"#, #"{"quantity":0}"#, #"{"redeem_until":"soon"}"#,
                    #"{"redeem_until":5}"#] {
            #expect(problem { _ = try change(bad) }?.code == "invalid_request", "\(bad)")
        }
    }

    @Test func ticketCodesAreTheirTwoShapesOnly() {
        let hex = "0123456789abcdef0123456789abcdef"
        #expect(TicketStore.Code(hex) == .bare(hex))
        #expect(TicketStore.Code("42-\(hex)") == .ofCoupon(42, "42-\(hex)"))
        for bad in ["", "42", "42-", "-\(hex)", "0-\(hex)", "+42-\(hex)", "042x-\(hex)", "42-\(hex.uppercased())",
                    "42-\(hex)0", String(hex.dropLast()), "42-42-\(hex)", "99999999999999999999-\(hex)", "42 -\(hex)"] {
            #expect(TicketStore.Code(bad) == nil, "\(bad)")
        }
    }

    @Test func ordersGrantsAndPagesAreChecked() throws {
        func checkout(_ body: String) throws -> (String, Int?) {
            let parsed = try RequestParser.checkout(from: Data(body.utf8))
            return (parsed.orderID, parsed.holdSeconds)
        }
        #expect(try checkout(#"{"order_id":"A-1:b@c"}"#) == ("A-1:b@c", nil))
        #expect(try checkout(#"{"order_id":"o","hold_seconds":1}"#) == ("o", 1))
        #expect(try checkout(#"{"order_id":"o","hold_seconds":86400}"#) == ("o", 86_400))
        for bad in [#"{"order_id":""}"#, #"{"order_id":"a b"}"#, #"{"order_id":1}"#, "{}", #"{"order_id":"o","hold_seconds":0}"#,
                    #"{"order_id":"o","hold_seconds":86401}"#, #"{"order_id":"o","hold_seconds":1.5}"#,
                    #"{"order_id":"o","hold_seconds":"60"}"#, #"{"order_id":"o","hold_seconds":-1}"#,
                    #"{"order_id":"o","hold_seconds":null}"#] {
            #expect(problem { _ = try checkout(bad) }?.code == "invalid_request", "\(bad)")
        }
        #expect(try RequestParser.grantedUsers(from: Data(#"{"user_ids":["a","b","a"]}"#.utf8)) == ["a", "b", "a"])
        let tooMany = #"{"user_ids":\#((0...10_000).map { "u\($0)" })}"#
        for bad in [#"{"user_ids":[]}"#, #"{"user_ids":["a","b c"]}"#, #"{"user_ids":"a"}"#, tooMany] {
            #expect(problem { _ = try RequestParser.grantedUsers(from: Data(bad.utf8)) }?.code == "invalid_request")
        }
        #expect(try RequestParser.limit(nil, in: 1...100, fallback: 20) == 20)
        #expect(try RequestParser.limit("100", in: 1...100, fallback: 20) == 100)
        for bad in ["0", "101", "-1", "1.5", "", "999999"] {
            #expect(problem { _ = try RequestParser.limit(bad, in: 1...100, fallback: 20) } != nil, "\(bad)")
        }
        #expect(try RequestParser.afterNumber("42") == 42)
        #expect(problem { _ = try RequestParser.afterNumber("2147483648") } != nil)
        let cursor = TicketStore.UserCursor(issuedAtMicros: 1_764_114_000_123_456, couponID: 7)
        #expect(try RequestParser.userCursor(cursor.description) == cursor)
        // Found by hand: the largest 64-bit instant answered 500 (an interval out of PostgreSQL's range).
        for bad in ["12", "a-1", "1-2-3", "-1", "1-", "99999999999999999999-1", "9223372036854775807-1",
                    "253402300800000000-1", "1764114000123456-0"] {
            #expect(problem { _ = try RequestParser.userCursor(bad) } != nil, "\(bad)")
        }
    }

    /// JSON allows a key twice and parsers differ on which value wins, so a body naming one twice is refused.
    @Test func aKeyNamedTwiceIsRefused() throws {
        for (body, key) in [(#"{"user_id":"victim","user_id":"me"}"#, "user_id"), (#"{"user_id":"a","user\u005fid":"b"}"#, "user_id"),
                            (#"{"name":"x","quantity":1, "quantity" : 2}"#, "quantity"), (#"{"a":{"b":1,"b":2}}"#, "b"),
                            (#"{"x":"\"","user_id":"victim1","user_id":"mallory"}"#, "user_id")] {
            #expect(throws: StrictJSON.Refusal.repeatedKey(key), "\(body)") { try StrictJSON.check(Data(body.utf8)) }
        }
        for body in [#"{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":"a\"x"}]}"#, #"{"user_ids":["a","a"]}"#, #"{"a":"b","b":"a"}"#] {
            #expect(throws: Never.self, "\(body)") { try StrictJSON.check(Data(body.utf8)) }
        }
        let issue = problem { _ = try RequestParser.issueUser(from: Data(#"{"user_id":"victim", "user_id":"me"}"#.utf8)) }
        #expect(issue?.detail == "field 'user_id' appears twice in the body")
        #expect(problem { _ = try RequestParser.newCoupon(from: Data(#"{"name":"x","quantity":1,"quantity":2}"#.utf8)) } != nil)
    }
}

/// The feed's query and a webhook's body: what is refused, and what passes.
@Suite struct EventRequestTests {
    @Test(arguments: [
        "", "-1", "+1", "1.0", "x", "0x10", String(repeating: "9", count: 19), " 1", "1.", ".1", "1.1.1", "1.-1", "1.x", "1. 1",
        "1.+1", "1." + String(repeating: "9", count: 10),
    ])
    func aCursorThatIsNoPositionIsRefused(_ text: String) {
        #expect(throws: CouponProblem.self) { try RequestParser.eventCursor(text) }
    }

    @Test func cursorsAndWaits() throws {
        #expect(try RequestParser.eventCursor(nil) == EventCursor(position: 0))
        #expect(try RequestParser.eventCursor("42") == EventCursor(position: 42))
        #expect(try RequestParser.eventCursor("42.7") == EventCursor(position: 42, within: 7))
        #expect(try RequestParser.eventCursor("42.7").description == "42.7")
        // The whole row comes after any part of it.
        #expect(EventCursor(position: 42, within: 7) < EventCursor(position: 42))
        #expect(EventCursor(position: 41) < EventCursor(position: 42, within: 1))
        #expect(try RequestParser.eventWait(nil) == .zero)
        #expect(try RequestParser.eventWait("30") == .seconds(30))
        for bad in ["31", "-1", "1.5", "", "x"] { #expect(throws: CouponProblem.self) { try RequestParser.eventWait(bad) } }
    }

    @Test func aWebhookNamesAnHTTPURLAndKnownTypes() throws {
        let (url, types) = try RequestParser.newWebhook(from: Data(#"{"url":"https://shop.example/hooks?x=1","types":["ticket.issued"]}"#.utf8))
        #expect(url == "https://shop.example/hooks?x=1" && types == [.ticketIssued])
        #expect(try RequestParser.newWebhook(from: Data(#"{"url":"http://10.0.0.7:9000/"}"#.utf8)).types == nil)
        let refused = [
            #"{"url":"ftp://a/x"}"#, #"{"url":"http://u:p@a/x"}"#, #"{"url":"http://u@a/x"}"#, #"{"url":"a/x"}"#,
            #"{"url":"http://a/x#f"}"#, #"{"url":"javascript:alert(1)"}"#, #"{"url":"http://a/x","types":["nope"]}"#,
            #"{"url":"http://a/x","types":[]}"#, #"{"url":"http://a/x","url":"http://b/x"}"#, #"{"url":"http://a/x","types":null}"#,
            #"{"url":"http://a/\#(String(repeating: "x", count: 2_050))"}"#,
        ]
        for body in refused { #expect(throws: CouponProblem.self, "\(body)") { try RequestParser.newWebhook(from: Data(body.utf8)) } }
    }
}
