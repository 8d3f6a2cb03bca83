import Foundation
import Hummingbird
import Logging

/// Tickets after the sale: look one up (by its coupon and holder, or by its code), redeem or hold it
/// for an order at checkout, restore it when the order is cancelled, return it to the pool (admin),
/// list a user's tickets, export a coupon's winners (admin).
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
        router.get("/v1/tickets/:code", use: ticketByCode)
        router.post("/v1/tickets/:code/redemption", use: redeemByCode)
        router.delete("/v1/tickets/:code/redemption", use: restoreByCode)
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets", allowed: [.get])
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets/:user_id", allowed: [.get, .delete])
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets/:user_id/redemption", allowed: [.post, .delete])
        router.refuseOtherMethods(on: "/v1/users/:user_id/tickets", allowed: [.get])
        router.refuseOtherMethods(on: "/v1/tickets/:code", allowed: [.get])
        router.refuseOtherMethods(on: "/v1/tickets/:code/redemption", allowed: [.post, .delete])
    }

    @Sendable func ticket(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        let (id, userID) = try ticketOfCaller(request, context)
        return HeldTicketResponse(try await found { try await tickets.heldTicket(couponID: id, userID: userID) })
    }

    /// `GET /v1/tickets/{code}`: one indexed read. A caller who acts only for one user finds only their tickets.
    @Sendable func ticketByCode(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        let holder = try access.caller(of: request).onlyUser
        guard let code = TicketStore.Code(context.parameters.get("code") ?? "") else { throw CouponProblem.ticketNotFound }
        return HeldTicketResponse(try await found { try await tickets.ticket(code: code, holder: holder) })
    }

    @Sendable func redeem(_ request: Request, context: Context) async throws -> EditedResponse<HeldTicketResponse> {
        let (id, userID) = try ticketOfCaller(request, context)
        return try await redeem(.holder(couponID: id, userID: userID), request, context)
    }

    @Sendable func redeemByCode(_ request: Request, context: Context) async throws -> EditedResponse<HeldTicketResponse> {
        try await redeem(try await keyOfCode(request, context), request, context)
    }

    /// Redeems the ticket for the body's order, or holds it for that order when the body asks for seconds.
    func redeem(_ key: TicketKey, _ request: Request, _ context: Context) async throws -> EditedResponse<HeldTicketResponse> {
        let (orderID, holdSeconds) = try RequestParser.checkout(from: try await request.jsonBody())
        let answer = try await database.withinDeadline { try await redemptions.redeem(key, orderID: orderID, holdSeconds: holdSeconds) }
        countLapse(answer.clearedLapsedHold, key, context)
        let metadata: Logger.Metadata = ["coupon_id": "\(key.couponID)", "order_id": "\(orderID)"]
        switch answer.outcome {
        case .redeemed(let held):
            metrics.redemptions.increment()
            context.logger.info("ticket redeemed", metadata: metadata)
            return EditedResponse(status: .created, response: HeldTicketResponse(held))
        case .holdPlaced(let held):
            metrics.holdsPlaced.increment()
            context.logger.info("ticket held", metadata: metadata.merging(["hold_seconds": "\(holdSeconds ?? 0)"]) { $1 })
            return EditedResponse(status: .created, response: HeldTicketResponse(held))
        case .holdConfirmed(let held):
            metrics.redemptions.increment()
            metrics.holdsConfirmed.increment()
            context.logger.info("hold confirmed", metadata: metadata)
            return EditedResponse(status: .ok, response: HeldTicketResponse(held))
        case .redeemedBefore(let held), .holdRepeated(let held):
            return EditedResponse(status: .ok, response: HeldTicketResponse(held))
        case .alreadyRedeemed: throw CouponProblem.alreadyRedeemed
        case .ticketHeld: throw CouponProblem.ticketHeld
        case .closed: throw CouponProblem.redemptionClosed
        case .ticketNotFound: throw CouponProblem.ticketNotFound
        case .couponNotFound: throw CouponProblem.couponNotFound
        }
    }

    /// Undoes the hold or redemption of the order the query names, and no other's.
    @Sendable func restore(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        let (id, userID) = try ticketOfCaller(request, context)
        return try await restore(.holder(couponID: id, userID: userID), request, context)
    }

    @Sendable func restoreByCode(_ request: Request, context: Context) async throws -> HeldTicketResponse {
        try await restore(try await keyOfCode(request, context), request, context)
    }

    func restore(_ key: TicketKey, _ request: Request, _ context: Context) async throws -> HeldTicketResponse {
        let orderID = try RequestParser.restoredOrder(request.uri.queryParameters.get("order_id"))
        let answer = try await database.withinDeadline { try await redemptions.restore(key, orderID: orderID) }
        countLapse(answer.clearedLapsedHold, key, context)
        switch answer.outcome {
        case .restored(let held):
            metrics.restores.increment()
            context.logger.info("redemption restored", metadata: ["coupon_id": "\(key.couponID)", "order_id": "\(orderID)"])
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
        let answer = try await database.withinDeadline { try await tickets.returnToPool(couponID: id, userID: userID) }
        countLapse(answer.clearedLapsedHold, .holder(couponID: id, userID: userID), context)
        switch answer.outcome {
        case .returned:
            metrics.returns.increment()
            context.logger.info("ticket returned to the pool", metadata: ["coupon_id": "\(id)", "user_id": "\(userID)"])
            return Response(status: .noContent)
        case .redeemed: throw CouponProblem.ticketRedeemed
        case .held: throw CouponProblem.ticketHeld
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

    /// The ticket a lookup found, its lapsed hold counted when this lookup cleared it.
    func found(_ lookUp: @escaping @Sendable () async throws -> TicketAnswer<HeldTicket>?) async throws -> HeldTicket {
        guard let answer = try await database.withinDeadline(lookUp) else { throw CouponProblem.ticketNotFound }
        if answer.clearedLapsedHold { metrics.holdsLapsed.increment() }
        return answer.outcome
    }

    func countLapse(_ cleared: Bool, _ key: TicketKey, _ context: Context) {
        guard cleared else { return }
        metrics.holdsLapsed.increment()
        context.logger.info("hold lapsed", metadata: ["coupon_id": "\(key.couponID)"])
    }

    /// The ticket a path's code names, for the routes that change it: a code that carries its coupon
    /// needs no read; a bare code (drawn before migration 0010) one, for its coupon. Not a code: 404.
    func keyOfCode(_ request: Request, _ context: Context) async throws -> TicketKey {
        let holder = try access.caller(of: request).onlyUser
        switch TicketStore.Code(context.parameters.get("code") ?? "") {
        case .ofCoupon(let couponID, let code):
            return .code(code, couponID: couponID, holder: holder)
        case .bare(let code):
            guard let couponID = try await database.withinDeadline({ try await tickets.couponID(ofBareCode: code) }) else {
                throw CouponProblem.ticketNotFound
            }
            return .code(code, couponID: couponID, holder: holder)
        case nil:
            throw CouponProblem.ticketNotFound
        }
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
