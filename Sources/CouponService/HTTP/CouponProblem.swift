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
        case unauthorized
        case invalidToken = "invalid_token"
        case forbidden
        case adminDisabled = "admin_disabled"
        case unavailable
        case adminBusy = "admin_busy"
        case bodyTooLarge = "body_too_large"
        case requestTimeout = "request_timeout"
        case unsupportedMediaType = "unsupported_media_type"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case `internal`
    }

    /// A ticket function's refusal, its outcome's name as the code.
    init(status: HTTPResponse.Status, refusal: TicketOutcome, detail: String) {
        precondition(refusal.isRefusal)
        self.init(status: status, code: refusal.rawValue, detail: detail)
    }

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
    static let couponNotFound = Self(
        status: .notFound, refusal: .couponNotFound, detail: "No coupon has this id.")
    static let ticketNotFound = Self(
        status: .notFound, refusal: .ticketNotFound, detail: "No ticket held by a user has this coupon and user, or this code.")
    static let soldOut = Self(
        status: .conflict, refusal: .soldOut, detail: "Every ticket of this coupon has been issued.")
    static let notStarted = Self(
        status: .conflict, refusal: .notStarted, detail: "The sale of this coupon has not started yet.")
    static let ended = Self(
        status: .conflict, refusal: .ended, detail: "The sale of this coupon has ended.")
    static let alreadyRedeemed = Self(
        status: .conflict, refusal: .alreadyRedeemed, detail: "This ticket has been redeemed for another order.")
    static let ticketHeld = Self(
        status: .conflict, refusal: .ticketHeld,
        detail: "This ticket is held for another order; it is free again once that hold lapses or is restored.")
    static let redemptionClosed = Self(
        status: .conflict, refusal: .redemptionClosed, detail: "Tickets of this coupon can no longer be redeemed.")
    static let ticketRedeemed = Self(
        status: .conflict, refusal: .ticketRedeemed, detail: "A redeemed ticket cannot return to the pool; restore it first.")
    static func quantityBelowIssued(issued: Int) -> Self {
        .init(
            status: .conflict, code: .quantityBelowIssued,
            detail: "The quantity cannot go below the \(issued) tickets already issued.")
    }
    static let unauthorized = Self(
        status: .unauthorized, code: .unauthorized, detail: "This route needs 'Authorization: Bearer <admin token>'.")
    /// A user route without a bearer that holds, in JWT mode (RFC 6750's `invalid_token`).
    static func invalidToken(_ detail: String) -> Self {
        .init(status: .unauthorized, code: .invalidToken, detail: detail)
    }
    static let forbidden = Self(
        status: .forbidden, code: .forbidden, detail: "This credential may not act for this user.")
    static let otherOrder = Self(
        status: .conflict, refusal: .otherOrder,
        detail: "This ticket is held or redeemed for another order; only that order's cancellation restores it.")
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
