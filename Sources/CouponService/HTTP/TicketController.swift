import Foundation
import Hummingbird
import Logging

/// Tickets after the sale: look one up, redeem it at checkout, restore it when the order is
/// cancelled, return it to the pool (admin), list a user's tickets, export a coupon's winners (admin).
struct TicketController<Context: RequestContext>: Sendable {
    let tickets: TicketStore
    let redemptions: RedemptionStore
    let admin: AdminGuard
    let access: UserAccess
    let database: DatabaseGate
    let metrics: CouponMetrics

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/coupons/:id/tickets", use: winners)
        router.get("/v1/coupons/:id/tickets/:user_id", use: ticket)
        router.delete("/v1/coupons/:id/tickets/:user_id", use: returnToPool)
        router.post("/v1/coupons/:id/tickets/:user_id/redemption", use: redeem)
        router.delete("/v1/coupons/:id/tickets/:user_id/redemption", use: restore)
        router.get("/v1/users/:user_id/tickets", use: userTickets)
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets", allowed: [.get])
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets/:user_id", allowed: [.get, .delete])
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets/:user_id/redemption", allowed: [.post, .delete])
        router.refuseOtherMethods(on: "/v1/users/:user_id/tickets", allowed: [.get])
    }

    @Sendable func ticket(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        let (id, userID) = try ticketOfCaller(request, context)
        guard let held = try await database.withinDeadline({ try await tickets.heldTicket(couponID: id, userID: userID) }) else {
            throw CouponProblem.ticketNotFound
        }
        return HeldTicketResponse(held)
    }

    @Sendable func redeem(_ request: Request, context: Context) async throws -> EditedResponse<HeldTicketResponse> {
        let (id, userID) = try ticketOfCaller(request, context)
        let orderID = try RequestParser.orderID(from: try await request.jsonBody())
        switch try await database.withinDeadline({ try await redemptions.redeem(couponID: id, userID: userID, orderID: orderID) }) {
        case .redeemed(let held):
            metrics.redemptions.increment()
            context.logger.info("ticket redeemed", metadata: ["coupon_id": "\(id)", "user_id": "\(userID)", "order_id": "\(orderID)"])
            return EditedResponse(status: .created, response: HeldTicketResponse(held))
        case .redeemedBefore(let held): return EditedResponse(status: .ok, response: HeldTicketResponse(held))
        case .alreadyRedeemed: throw CouponProblem.alreadyRedeemed
        case .closed: throw CouponProblem.redemptionClosed
        case .ticketNotFound: throw CouponProblem.ticketNotFound
        case .couponNotFound: throw CouponProblem.couponNotFound
        }
    }

    /// Undoes the redemption for the order the query names, and no other's.
    @Sendable func restore(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        let (id, userID) = try ticketOfCaller(request, context)
        let orderID = try RequestParser.restoredOrder(request.uri.queryParameters.get("order_id"))
        switch try await database.withinDeadline({ try await redemptions.restore(couponID: id, userID: userID, orderID: orderID) }) {
        case .restored(let held):
            metrics.restores.increment()
            context.logger.info(
                "redemption restored", metadata: ["coupon_id": "\(id)", "user_id": "\(userID)", "order_id": "\(orderID)"])
            return HeldTicketResponse(held)
        case .notRedeemed(let held): return HeldTicketResponse(held)
        case .otherOrder: throw CouponProblem.otherOrder
        case .ticketNotFound: throw CouponProblem.ticketNotFound
        case .couponNotFound: throw CouponProblem.couponNotFound
        }
    }

    /// The ticket is free again for anyone, its holder included; a sold-out coupon opens again on
    /// every instance through its notification.
    @Sendable func returnToPool(_ request: Request, context: Context) async throws -> Response {
        try admin.check(request)
        let (id, userID) = try Self.couponAndUser(context)
        switch try await database.withinDeadline({ try await tickets.returnToPool(couponID: id, userID: userID) }) {
        case .returned:
            metrics.returns.increment()
            context.logger.info("ticket returned to the pool", metadata: ["coupon_id": "\(id)", "user_id": "\(userID)"])
            return Response(status: .noContent)
        case .redeemed: throw CouponProblem.ticketRedeemed
        case .ticketNotFound: throw CouponProblem.ticketNotFound
        case .couponNotFound: throw CouponProblem.couponNotFound
        }
    }

    @Sendable func userTickets(_ request: Request, context: Context) async throws -> UserTicketsResponse {
        let caller = try access.caller(of: request)
        let userID = try RequestParser.pathUserID(context.parameters.get("user_id"))
        try caller.check(actsFor: userID)
        let query = request.uri.queryParameters
        let limit = try RequestParser.limit(query.get("limit"), in: 1...100, fallback: 20)
        let after = try RequestParser.userCursor(query.get("after"))
        let page = try await database.withinDeadline { try await tickets.tickets(ofUser: userID, after: after, limit: limit) }
        return UserTicketsResponse(page: page)
    }

    @Sendable func winners(_ request: Request, context: Context) async throws -> WinnersResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let query = request.uri.queryParameters
        let limit = try RequestParser.limit(query.get("limit"), in: 1...1_000, fallback: 1_000)
        let after = try RequestParser.afterNumber(query.get("after"))
        guard let winners = try await database.withinDeadline({ try await tickets.winners(couponID: id, after: after, limit: limit) }) else {
            throw CouponProblem.couponNotFound
        }
        return WinnersResponse(winners: winners, next: winners.count == limit ? winners.last?.ticket.number : nil)
    }

    /// The coupon id and the user id of a ticket's path, once the caller may act for that user.
    func ticketOfCaller(_ request: Request, _ context: Context) throws(CouponProblem) -> (Int64, String) {
        let caller = try access.caller(of: request)
        let (id, userID) = try Self.couponAndUser(context)
        try caller.check(actsFor: userID)
        return (id, userID)
    }

    /// The coupon id and the user id of a ticket's path.
    static func couponAndUser(_ context: Context) throws(CouponProblem) -> (Int64, String) {
        (try RequestParser.couponID(context.parameters.get("id")), try RequestParser.pathUserID(context.parameters.get("user_id")))
    }
}
