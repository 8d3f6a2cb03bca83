import Foundation
import Hummingbird

/// An RFC 9457 problem answer. `code` is the stable, machine-readable part; `detail` is for people.
/// Every code is spelled once: a refusal's is its `TicketOutcome`, any other a `Code`.
///
/// The body is encoded once, when the problem is made: the refusals a sale answers thousands of times
/// a second are static values, so each answer only copies bytes.
struct CouponProblem: Error, Equatable, HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let detail: String
    private let headers: HTTPFields
    private let body: ByteBuffer

    /// The codes of problems that are not a ticket function's refusal.
    enum Code: String, CaseIterable {
        case invalidRequest = "invalid_request"
        case quantityBelowIssued = "quantity_below_issued"
        case windowOutOfOrder = "window_out_of_order"
        case unauthorized
        case invalidToken = "invalid_token"
        case forbidden
        case adminDisabled = "admin_disabled"
        case unavailable
        case adminBusy = "admin_busy"
        case eventsUnavailable = "events_unavailable"
        case bodyTooLarge = "body_too_large"
        case requestTimeout = "request_timeout"
        case unsupportedMediaType = "unsupported_media_type"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case `internal`
    }

    /// A ticket function's refusal: its outcome's name as the code, its status and detail
    /// (`TicketOutcome.answer`); nil for an outcome that is not a refusal. Made once per outcome.
    static func refusal(_ outcome: TicketOutcome) -> Self? { refusals[outcome] }

    private static let refusals: [TicketOutcome: Self] = Dictionary(
        uniqueKeysWithValues: TicketOutcome.allCases.compactMap { outcome in
            let (status, detail) = outcome.answer
            return detail.map { (outcome, Self(status: status, code: outcome.rawValue, detail: $0)) }
        })

    static let couponNotFound = refusal(.couponNotFound)!
    static let ticketNotFound = refusal(.ticketNotFound)!

    init(status: HTTPResponse.Status, code: Code, detail: String, retryAfter: Int? = nil, allow: String? = nil) {
        self.init(status: status, code: code.rawValue, detail: detail, retryAfter: retryAfter, allow: allow)
    }

    /// `retryAfter`: seconds, sent as `Retry-After` when the client should come back; `allow`: the
    /// methods the path does serve, sent as `Allow` with 405.
    private init(status: HTTPResponse.Status, code: String, detail: String, retryAfter: Int? = nil, allow: String? = nil) {
        self.status = status
        self.code = code
        self.detail = detail
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        // RFC 6750: a bearer that does not hold says so; an admin route without one just asks for it.
        if status == .unauthorized { headers[.wwwAuthenticate] = code == Code.invalidToken.rawValue ? #"Bearer error="\#(code)""# : "Bearer" }
        if let allow { headers[.allow] = allow }
        self.headers = headers
        let fields = Body(type: "about:blank", title: status.reasonPhrase, status: status.code, detail: detail, code: code)
        // Five strings and an integer always encode.
        body = ByteBuffer(bytes: try! JSONEncoder.coupon.encode(fields))
    }

    static func invalidRequest(_ detail: String) -> Self {
        .init(status: .badRequest, code: .invalidRequest, detail: detail)
    }
    static func quantityBelowIssued(issued: Int) -> Self {
        .init(
            status: .conflict, code: .quantityBelowIssued,
            detail: "The quantity cannot go below the \(issued) tickets already issued.")
    }
    /// A change of one bound that would put it past the coupon's other one (the body alone was valid).
    static func windowOutOfOrder(startsAt: Date, endsAt: Date) -> Self {
        .init(
            status: .conflict, code: .windowOutOfOrder,
            detail: "The sale would end before it starts: starts_at \(RFC3339.string(startsAt)), ends_at \(RFC3339.string(endsAt)); change both, or clear one.")
    }
    static let unauthorized = Self(
        status: .unauthorized, code: .unauthorized, detail: "This route needs 'Authorization: Bearer <admin token>'.")
    /// A route an admin or one service may call (the events' reader, the checkout).
    static func unauthorized(orThe service: String) -> Self {
        .init(status: .unauthorized, code: .unauthorized, detail: "This route needs 'Authorization: Bearer <admin token>' or the \(service) token.")
    }
    /// A user route without a bearer that holds, in JWT mode (RFC 6750's `invalid_token`).
    static func invalidToken(_ detail: String) -> Self {
        .init(status: .unauthorized, code: .invalidToken, detail: detail)
    }
    static let forbidden = Self(
        status: .forbidden, code: .forbidden, detail: "This credential may not act for this user.")
    static let adminDisabled = Self(
        status: .forbidden, code: .adminDisabled,
        detail: "No admin token is configured on this server (COUPON_ADMIN_TOKEN or --admin-token).")
    static let unavailable = Self(
        status: .serviceUnavailable, code: .unavailable, detail: "The database is unreachable; retry shortly.", retryAfter: 1)
    static func adminBusy(limit: Int) -> Self {
        .init(
            status: .serviceUnavailable, code: .adminBusy,
            detail: "\(limit) admin writes are running, as many as this instance runs at once; retry shortly.", retryAfter: 1)
    }
    static let bodyTooLarge = Self(
        status: .contentTooLarge, code: .bodyTooLarge, detail: "The request body is larger than this route accepts (64 KiB; 1 MiB for grants).")
    static let requestTimeout = Self(
        status: .requestTimeout, code: .requestTimeout,
        detail: "The request body did not arrive whole within the request deadline (--request-timeout).")
    static let unsupportedMediaType = Self(
        status: .unsupportedMediaType, code: .unsupportedMediaType, detail: "The request body must be application/json.")
    static let eventsUnavailable = Self(
        status: .notImplemented, code: .eventsUnavailable,
        detail: "The event feed and webhooks need one PostgreSQL primary: on a Citus cluster each worker numbers its coupons' events apart (docs/events.md).")
    static let webhookNotFound = Self(status: .notFound, code: .notFound, detail: "No webhook has this id.")
    static let routeNotFound = Self(status: .notFound, code: .notFound, detail: "No route matches this path.")
    static let methodNotAllowed = Self(
        status: .methodNotAllowed, code: .methodNotAllowed, detail: "This route does not accept this method.")
    static func methodNotAllowed(allow: [HTTPRequest.Method]) -> Self {
        let names = allow.map(\.rawValue).joined(separator: ", ")
        return .init(
            status: .methodNotAllowed, code: .methodNotAllowed, detail: "This route accepts \(names).", allow: names)
    }
    static let internalError = Self(
        status: .internalServerError, code: .internal, detail: "The server failed to handle this request.")

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }

    struct Body: Codable {
        var type: String
        var title: String
        var status: Int
        var detail: String
        var code: String
    }
}
