@testable import CouponService
import CouponTestSupport
import Foundation
import NIOCore
import Testing

/// The hand-written ticket answer is byte for byte what `JSONEncoder.coupon` would write.
@Suite struct TicketResponseTests {
    struct Encoded: Encodable {
        struct Ticket: Encodable { var number: Int; var code: String }
        var coupon_id: Int64
        var user_id: String
        var ticket: Ticket
        var issued_at: String
    }

    @Test(arguments: [
        ("alice", "7181b8304ca24bb6b58879b9d69007c0", 1_795_737_600.349),
        ("a.b_c:d@e-f", "0123456789abcdef0123456789abcdef", 0.0),
        ("quote\"back\\slash\nnew\r\t\u{08}\u{0C}\u{01}é", "code", 253_402_300_799.999),
    ])
    func matchesTheEncoder(user: String, code: String, seconds: Double) throws {
        let issuedAt = Date(timeIntervalSince1970: seconds)
        let ticket = IssuedTicket(couponID: 9_007_199_254_740_993, userID: user, number: 1_000_000, code: code, issuedAt: issuedAt)
        let expected = try JSONEncoder.coupon.encode(Encoded(
            coupon_id: ticket.couponID, user_id: user, ticket: .init(number: ticket.number, code: code),
            issued_at: RFC3339.string(issuedAt)))
        let written = TicketResponse(ticket).body
        #expect(String(buffer: written) == String(decoding: expected, as: UTF8.self))
    }
}
