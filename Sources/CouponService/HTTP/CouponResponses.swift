import Foundation
import Hummingbird

/// `GET /v1/coupons/{id}` and the admin answers.
struct CouponResponse: ResponseEncodable {
    var coupon: Coupon
    var now: Date

    enum CodingKeys: String, CodingKey {
        case id, name, quantity, issued, remaining, starts_at, ends_at, redeem_until, status, created_at
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
        try container.encode(coupon.redeemUntil.map(RFC3339.string), forKey: .redeem_until)
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

    func response(from request: Request, context: some RequestContext) throws -> Response { response() }

    func response() -> Response { Response(status: status, headers: Self.headers, body: .init(byteBuffer: body)) }

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

/// A ticket where it stands at checkout: the answers of the redemption routes and of a ticket lookup.
/// `{"coupon_id":1,"hold_until":null,"issued_at":"...","order_id":null,"redeemed_at":null,"state":"issued",`
/// `"ticket":{"code":"...","number":1},"user_id":"..."}`
struct TicketRecordResponse: ResponseEncodable {
    var record: TicketRecord

    init(_ record: TicketRecord) { self.record = record }

    enum CodingKeys: String, CodingKey { case coupon_id, user_id, ticket, issued_at, state, redeemed_at, order_id, hold_until }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(record.ticket.couponID, forKey: .coupon_id)
        try container.encode(record.ticket.userID, forKey: .user_id)
        try container.encode(TicketFields(record.ticket), forKey: .ticket)
        try container.encode(RFC3339.string(record.ticket.issuedAt), forKey: .issued_at)
        try container.encode(record.redemption.map { RFC3339.string($0.redeemedAt) }, forKey: .redeemed_at)
        try container.encode(record.orderID, forKey: .order_id)
        try container.encode(record.state.rawValue, forKey: .state)
        try container.encode(record.hold.map { RFC3339.string($0.until) }, forKey: .hold_until)
    }

    /// The same JSON written by hand, for the events' bodies (`EventBatchJSON`); `EventJSONTests`
    /// holds the two to the same bytes.
    func write(to body: inout ByteBuffer) {
        func instant(_ date: Date?) {
            guard let date else {
                body.writeStaticString("null")
                return
            }
            body.writeStaticString("\"")
            RFC3339.write(date, to: &body)
            body.writeStaticString("\"")
        }
        body.writeStaticString(#"{"coupon_id":"#)
        body.writeString(String(record.ticket.couponID))
        body.writeStaticString(#","hold_until":"#)
        instant(record.hold?.until)
        body.writeStaticString(#","issued_at":"#)
        instant(record.ticket.issuedAt)
        body.writeStaticString(#","order_id":"#)
        if let order = record.orderID { body.writeJSONString(order) } else { body.writeStaticString("null") }
        body.writeStaticString(#","redeemed_at":"#)
        instant(record.redemption?.redeemedAt)
        body.writeStaticString(#","state":""#)
        body.writeString(record.state.rawValue)
        body.writeStaticString(#"","ticket":{"code":"#)
        body.writeJSONString(record.ticket.code)
        body.writeStaticString(#","number":"#)
        body.writeString(String(record.ticket.number))
        body.writeStaticString(#"},"user_id":"#)
        body.writeJSONString(record.ticket.userID)
        body.writeStaticString("}")
    }
}

/// The answer to a checkout route: the ticket after the change with the outcome's status (none with
/// `returned`'s 204), or the outcome's refusal.
struct CheckoutResponse: ResponseGenerator {
    var answer: TicketAnswer

    func response(from request: Request, context: some RequestContext) throws -> Response {
        if let refusal = CouponProblem.refusal(answer.outcome) { return try refusal.response(from: request, context: context) }
        let status = answer.outcome.answer.status
        guard status != .noContent, let record = answer.ticket else { return Response(status: status) }
        return try EditedResponse(status: status, response: TicketRecordResponse(record)).response(from: request, context: context)
    }
}

/// `"ticket": {"code", "number"}`, as in every answer that shows one.
struct TicketFields: Encodable {
    var code: String
    var number: Int

    init(_ ticket: IssuedTicket) {
        code = ticket.code
        number = ticket.number
    }
}

/// `GET /v1/users/{user_id}/tickets`: the user's tickets newest first, and where the next page starts.
struct UserTicketsResponse: ResponseEncodable {
    var page: TicketStore.UserPage

    /// A ticket's fields and the coupon's name.
    struct Item: Encodable {
        var couponName: String
        var record: TicketRecord

        enum CodingKeys: String, CodingKey { case coupon_name }

        func encode(to encoder: any Encoder) throws {
            try TicketRecordResponse(record).encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(couponName, forKey: .coupon_name)
        }
    }

    enum CodingKeys: String, CodingKey { case tickets, next }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(page.tickets.map { Item(couponName: $0.couponName, record: $0.record) }, forKey: .tickets)
        try container.encode(page.next?.description, forKey: .next)
    }
}

/// `GET /v1/orders/{order_id}/tickets`: the tickets an order holds or redeemed.
struct OrderTicketsResponse: ResponseEncodable {
    var tickets: [TicketRecord]

    enum CodingKeys: String, CodingKey { case tickets }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tickets.map(TicketRecordResponse.init), forKey: .tickets)
    }
}

/// `GET /v1/coupons/{id}/tickets`: a page of the coupon's winners in number order.
struct WinnersResponse: ResponseEncodable {
    var winners: [TicketRecord]
    /// The last number of a full page: pass it as `after` for the next one.
    var next: Int?

    enum CodingKeys: String, CodingKey { case tickets, next }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(winners.map(TicketRecordResponse.init), forKey: .tickets)
        try container.encode(next, forKey: .next)
    }
}

/// `POST /v1/coupons/{id}/grants`: one result per user asked, in the order asked.
struct GrantsResponse: ResponseEncodable {
    var results: [(userID: String, answer: TicketAnswer)]

    struct Result: Encodable {
        var userID: String
        var answer: TicketAnswer

        enum CodingKeys: String, CodingKey { case user_id, outcome, ticket, issued_at }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(userID, forKey: .user_id)
            try container.encode(answer.outcome.rawValue, forKey: .outcome)
            if let ticket = answer.granted?.ticket {
                try container.encode(TicketFields(ticket), forKey: .ticket)
                try container.encode(RFC3339.string(ticket.issuedAt), forKey: .issued_at)
            }
        }
    }

    enum CodingKeys: String, CodingKey { case results }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(results.map { Result(userID: $0.userID, answer: $0.answer) }, forKey: .results)
    }
}
