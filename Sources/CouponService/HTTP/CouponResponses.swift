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

/// The answer to an issue request and to a ticket lookup: the same bytes every time for one user.
///
/// Written by hand, in the sorted key order `JSONEncoder.coupon` would use, because it is on every
/// issuance's path: `{"coupon_id":1,"issued_at":"...","ticket":{"code":"...","number":1},"user_id":"..."}`.
struct TicketResponse: ResponseGenerator {
    var ticket: IssuedTicket
    var status: HTTPResponse.Status = .ok

    init(_ ticket: IssuedTicket, status: HTTPResponse.Status = .ok) {
        self.ticket = ticket
        self.status = status
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: Self.headers, body: .init(byteBuffer: body))
    }

    private static let headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]

    var body: ByteBuffer {
        var body = ByteBuffer()
        body.reserveCapacity(128 + ticket.userID.utf8.count + ticket.code.utf8.count)
        body.writeStaticString(#"{"coupon_id":"#)
        body.writeString(String(ticket.couponID))
        body.writeStaticString(#","issued_at":""#)
        RFC3339.write(ticket.issuedAt, to: &body)
        body.writeStaticString(#"","ticket":{"code":"#)
        body.writeJSONString(ticket.code)
        body.writeStaticString(#","number":"#)
        body.writeString(String(ticket.number))
        body.writeStaticString(#"},"user_id":"#)
        body.writeJSONString(ticket.userID)
        body.writeStaticString("}")
        return body
    }
}
