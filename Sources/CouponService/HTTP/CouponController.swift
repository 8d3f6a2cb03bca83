import Foundation
import Hummingbird
import Logging
import PostgresNIO

/// The coupons and their issuance. Handlers parse, call one store or the issuer, and map the result.
struct CouponController<Context: RequestContext>: Sendable {
    let coupons: CouponStore
    let issuer: TicketIssuer
    let catalogue: CouponCatalogue
    let admin: AdminGuard
    let access: UserAccess

    func addRoutes(to router: Router<Context>) {
        router.route("/v1/coupons") { $0.on(.post, use: create) }
        router.route("/v1/coupons/:id") {
            $0.on(.get, use: show)
            $0.on(.patch, use: change)
        }
        router.route("/v1/coupons/:id/close") { $0.on(.post, use: close) }
        router.route("/v1/coupons/:id/issue") { $0.on(.post, use: issue) }
        router.route("/v1/coupons/:id/grants") { $0.on(.post, use: grant) }
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> EditedResponse<CouponResponse> {
        try admin.check(request)
        let new = try RequestParser.newCoupon(from: try await request.jsonBody())
        let coupon = try await coupons.create(
            name: new.name, quantity: new.quantity, startsAt: new.startsAt, endsAt: new.endsAt, redeemUntil: new.redeemUntil)
        catalogue.record(coupon)
        context.logger.info("coupon created", metadata: ["coupon_id": "\(coupon.id)", "quantity": "\(coupon.quantity)"])
        return EditedResponse(
            status: .created, headers: [.location: "/v1/coupons/\(coupon.id)"],
            response: CouponResponse(coupon: coupon, now: catalogue.clock.reading().now))
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> CouponResponse {
        let id = try RequestParser.couponID(context.parameters.get("id"))
        guard let coupon = try await coupons.find(id: id) else {
            throw CouponProblem.couponNotFound
        }
        return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
    }

    @Sendable func change(_ request: Request, context: Context) async throws -> CouponResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let change = try RequestParser.couponChange(from: try await request.jsonBody())
        switch try await coupons.change(id: id, change) {
        case .changed(let coupon):
            catalogue.record(coupon)
            context.logger.info(
                "coupon changed",
                metadata: [
                    "coupon_id": "\(id)", "quantity": "\(coupon.quantity)", "starts_at": "\(coupon.startsAt.map(RFC3339.string) ?? "none")",
                    "ends_at": "\(coupon.endsAt.map(RFC3339.string) ?? "none")", "redeem_until": "\(coupon.redeemUntil.map(RFC3339.string) ?? "none")",
                ])
            return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
        case .notFound: throw CouponProblem.couponNotFound
        case .belowIssued(let issued): throw CouponProblem.quantityBelowIssued(issued: issued)
        case .windowOutOfOrder(let startsAt, let endsAt): throw CouponProblem.windowOutOfOrder(startsAt: startsAt, endsAt: endsAt)
        }
    }

    /// Ends the sale now (`CouponStore.close`); every instance's catalogue follows at the coupon's
    /// notification.
    @Sendable func close(_ request: Request, context: Context) async throws -> CouponResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        guard let coupon = try await coupons.close(id: id) else { throw CouponProblem.couponNotFound }
        catalogue.record(coupon)
        context.logger.notice("sale closed", metadata: ["coupon_id": "\(id)", "ends_at": "\(coupon.endsAt.map(RFC3339.string) ?? "none")"])
        return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
    }

    /// Refusals are answered, not thrown: after a sell-out nearly every request is one, and the
    /// problem's bytes are ready (`CouponProblem`).
    @Sendable func issue(_ request: Request, context: Context) async throws -> Response {
        let caller = try await access.caller(of: request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let userID = try caller.issuingUser(named: RequestParser.issueUser(from: try await request.jsonBody()))
        let answer = try await issuer.issue(couponID: id, userID: userID)
        guard let ticket = answer.granted?.ticket else {
            return try (CouponProblem.refusal(answer.outcome) ?? .internalError).response(from: request, context: context)
        }
        return TicketResponse(ticket, status: answer.outcome.answer.status).response()
    }

    /// Back-office grants: the same `issue_tickets` and rules as a sale, in transactions of up to
    /// 1,000 users; one result per user asked, in the order asked.
    @Sendable func grant(_ request: Request, context: Context) async throws -> GrantsResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let users = try RequestParser.grantedUsers(from: try await request.jsonBody(upTo: RequestParser.maxGrantBodyBytes))
        let results = try await issuer.grant(couponID: id, userIDs: users)
        if results.first?.answer.outcome == .couponNotFound { throw CouponProblem.couponNotFound }
        let issued = results.count { $0.answer.outcome == .issued }
        context.logger.info("tickets granted", metadata: ["coupon_id": "\(id)", "asked": "\(users.count)", "issued": "\(issued)"])
        return GrantsResponse(results: results)
    }
}
