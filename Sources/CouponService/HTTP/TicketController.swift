import Foundation
import Hummingbird
import Logging

/// Tickets after the sale: look one up (by its coupon and holder, or by its code), redeem or hold it
/// for an order at checkout, restore it when the order is cancelled, return it to the pool (admin),
/// list a user's tickets, an order's (checkout, admin), export a coupon's winners (admin).
struct TicketController<Context: RequestContext>: Sendable {
    let tickets: TicketStore
    let admin: AdminGuard
    let access: UserAccess

    func addRoutes(to router: Router<Context>) {
        router.route("/v1/coupons/:id/tickets") { $0.on(.get, use: winners) }
        router.route("/v1/coupons/:id/tickets/:user_id") {
            $0.on(.get, use: ticket)
            $0.on(.delete, use: returnToPool)
        }
        router.route("/v1/coupons/:id/tickets/:user_id/redemption") {
            $0.on(.post, use: redeem)
            $0.on(.delete, use: restore)
        }
        router.route("/v1/users/:user_id/tickets") { $0.on(.get, use: userTickets) }
        router.route("/v1/orders/:order_id/tickets") { $0.on(.get, use: orderTickets) }
        router.route("/v1/tickets/:code") { $0.on(.get, use: ticket) }
        router.route("/v1/tickets/:code/redemption") {
            $0.on(.post, use: redeem)
            $0.on(.delete, use: restore)
        }
    }

    /// `GET` a ticket by its holder or by its code: one indexed read. A caller who acts only for one
    /// user finds only their tickets.
    @Sendable func ticket(_ request: Request, context: Context) async throws -> TicketRecordResponse {
        guard let record = try await tickets.record(try await key(request, context)) else { throw CouponProblem.ticketNotFound }
        return TicketRecordResponse(record)
    }

    /// Redeems the ticket for the body's order, or holds it for that order when the body asks for seconds.
    @Sendable func redeem(_ request: Request, context: Context) async throws -> CheckoutResponse {
        let key = try await key(request, context)
        let (orderID, holdSeconds) = try RequestParser.checkout(from: try await request.jsonBody())
        return answer(try await tickets.redeem(key, orderID: orderID, holdSeconds: holdSeconds), key, orderID, context)
    }

    /// Undoes the hold or redemption of the order the query names, and no other's.
    @Sendable func restore(_ request: Request, context: Context) async throws -> CheckoutResponse {
        let key = try await key(request, context)
        let orderID = try RequestParser.restoredOrder(request.uri.queryParameters.get("order_id"))
        return answer(try await tickets.restore(key, orderID: orderID), key, orderID, context)
    }

    /// The ticket is free again for anyone, its holder included; a sold-out coupon opens again on
    /// every instance through its notification.
    @Sendable func returnToPool(_ request: Request, context: Context) async throws -> CheckoutResponse {
        try admin.check(request)
        let (id, userID) = try Self.couponAndUser(context)
        return answer(try await tickets.returnToPool(couponID: id, userID: userID), .holder(couponID: id, userID: userID), nil, context)
    }

    /// A checkout answer, logged when it is one.
    func answer(_ answer: TicketAnswer, _ key: TicketKey, _ orderID: String?, _ context: Context) -> CheckoutResponse {
        var metadata: Logger.Metadata = ["coupon_id": "\(key.couponID)", "outcome": "\(answer.outcome.rawValue)"]
        if let orderID { metadata["order_id"] = "\(orderID)" }
        if answer.clearedLapsedHold { context.logger.info("hold lapsed", metadata: ["coupon_id": "\(key.couponID)"]) }
        if !answer.outcome.isRefusal { context.logger.info("ticket answered at checkout", metadata: metadata) }
        return CheckoutResponse(answer: answer)
    }

    @Sendable func userTickets(_ request: Request, context: Context) async throws -> UserTicketsResponse {
        let caller = try await access.caller(of: request)
        let userID = try RequestParser.pathUserID(context.parameters.get("user_id"))
        try caller.check(actsFor: userID)
        let query = request.uri.queryParameters
        let limit = try RequestParser.limit(query.get("limit"), in: 1...100, fallback: 20)
        let after = try RequestParser.userCursor(query.get("after"))
        return UserTicketsResponse(page: try await tickets.tickets(ofUser: userID, after: after, limit: limit))
    }

    /// The tickets an order holds or redeemed (a lapsed hold holds none): the checkout's or an admin's
    /// way to learn what an order has, after an answer it never received.
    @Sendable func orderTickets(_ request: Request, context: Context) async throws -> OrderTicketsResponse {
        try admin.check(request, or: access.checkout, name: "checkout")
        let orderID = try RequestParser.pathOrderID(context.parameters.get("order_id"))
        return OrderTicketsResponse(tickets: try await tickets.tickets(ofOrder: orderID))
    }

    @Sendable func winners(_ request: Request, context: Context) async throws -> WinnersResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let query = request.uri.queryParameters
        let limit = try RequestParser.limit(query.get("limit"), in: 1...1_000, fallback: 1_000)
        let after = try RequestParser.afterNumber(query.get("after"))
        guard let winners = try await tickets.winners(couponID: id, after: after, limit: limit) else {
            throw CouponProblem.couponNotFound
        }
        return WinnersResponse(winners: winners, next: winners.count == limit ? winners.last?.ticket.number : nil)
    }

    /// The ticket a path names, once the caller may act for its holder: a coupon and a user, or a code
    /// (`TicketStore.key(of:holder:)`). Not a code, or a bare code no ticket has: 404.
    func key(_ request: Request, _ context: Context) async throws -> TicketKey {
        let caller = try await access.caller(of: request)
        guard let code = context.parameters.get("code") else {
            let (id, userID) = try Self.couponAndUser(context)
            try caller.check(actsFor: userID)
            return .holder(couponID: id, userID: userID)
        }
        guard let code = TicketStore.Code(code), let key = try await tickets.key(of: code, holder: caller.onlyUser) else {
            throw CouponProblem.ticketNotFound
        }
        return key
    }

    /// The coupon id and the user id of a ticket's path.
    static func couponAndUser(_ context: Context) throws(CouponProblem) -> (Int64, String) {
        (try RequestParser.couponID(context.parameters.get("id")), try RequestParser.pathUserID(context.parameters.get("user_id")))
    }
}
