import Foundation
import Hummingbird

/// `GET /v1/coupons/{id}` and the admin answers.
struct CouponResponse: ResponseEncodable {
    var coupon: Coupon
    var now: Date

    enum CodingKeys: String, CodingKey {
        case id, name, quantity, issued, remaining, starts_at, ends_at, status, created_at
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(coupon.id, forKey: .id)
        try container.encode(coupon.name, forKey: .name)
        try container.encode(coupon.quantity, forKey: .quantity)
        try container.encode(coupon.issued, forKey: .issued)
        try container.encode(coupon.remaining, forKey: .remaining)
        try container.encode(coupon.startsAt.map(RFC3339.string), forKey: .starts_at)
        try container.encode(coupon.endsAt.map(RFC3339.string), forKey: .ends_at)
        try container.encode(coupon.status(at: now), forKey: .status)
        try container.encode(RFC3339.string(coupon.createdAt), forKey: .created_at)
    }
}

/// The answer to an issue request and to a ticket lookup: the same body every time for one user.
struct TicketResponse: ResponseEncodable, Decodable, Equatable {
    struct Ticket: Codable, Equatable {
        var number: Int
        var code: String
    }
    var coupon_id: Int64
    var user_id: String
    var ticket: Ticket
    var issued_at: String

    init(_ ticket: IssuedTicket) {
        coupon_id = ticket.couponID
        user_id = ticket.userID
        self.ticket = Ticket(number: ticket.number, code: ticket.code)
        issued_at = RFC3339.string(ticket.issuedAt)
    }
}

enum RFC3339 {
    static func string(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
