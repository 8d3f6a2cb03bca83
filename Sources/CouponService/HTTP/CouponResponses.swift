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

/// `2026-11-24T19:35:10.349Z`: UTC, milliseconds. Written by hand because it is on every answer,
/// and `ISO8601FormatStyle` costs more than the rest of the answer's encoding.
enum RFC3339 {
    static func string(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds.quotientFloorDiv(1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return digits(parts.tm_year + 1900, 4) + "-" + digits(parts.tm_mon + 1, 2) + "-" + digits(parts.tm_mday, 2)
            + "T" + digits(parts.tm_hour, 2) + ":" + digits(parts.tm_min, 2) + ":" + digits(parts.tm_sec, 2)
            + "." + digits(Int32(milliseconds - Int64(seconds) * 1000), 3) + "Z"
    }
}

extension Int64 {
    /// Division rounding toward negative infinity, so dates before 1970 format correctly too.
    func quotientFloorDiv(_ divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }
}
