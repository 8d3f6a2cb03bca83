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
    let database: DatabaseGate

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/coupons", use: create)
        router.get("/v1/coupons/:id", use: show)
        router.patch("/v1/coupons/:id", use: change)
        router.post("/v1/coupons/:id/issue", use: issue)
        router.post("/v1/coupons/:id/grants", use: grant)
        router.refuseOtherMethods(on: "/v1/coupons", allowed: [.post])
        router.refuseOtherMethods(on: "/v1/coupons/:id", allowed: [.get, .patch])
        router.refuseOtherMethods(on: "/v1/coupons/:id/issue", allowed: [.post])
        router.refuseOtherMethods(on: "/v1/coupons/:id/grants", allowed: [.post])
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> EditedResponse<CouponResponse> {
        try admin.check(request)
        let new = try RequestParser.newCoupon(from: try await request.jsonBody())
        let coupon = try await database.adminWrite {
            try await coupons.create(
                name: new.name, quantity: new.quantity, startsAt: new.startsAt, endsAt: new.endsAt, redeemUntil: new.redeemUntil)
        }
        catalogue.record(coupon)
        context.logger.info("coupon created", metadata: ["coupon_id": "\(coupon.id)", "quantity": "\(coupon.quantity)"])
        return EditedResponse(
            status: .created, headers: [.location: "/v1/coupons/\(coupon.id)"],
            response: CouponResponse(coupon: coupon, now: catalogue.clock.reading().now))
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> CouponResponse {
        let id = try RequestParser.couponID(context.parameters.get("id"))
        guard let coupon = try await database.withinDeadline({ try await coupons.find(id: id) }) else {
            throw CouponProblem.couponNotFound
        }
        return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
    }

    @Sendable func change(_ request: Request, context: Context) async throws -> CouponResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let change = try RequestParser.couponChange(from: try await request.jsonBody())
        switch try await database.adminWrite({ try await coupons.change(id: id, change) }) {
        case .changed(let coupon):
            catalogue.record(coupon)
            context.logger.info(
                "coupon changed", metadata: ["coupon_id": "\(id)", "quantity": "\(coupon.quantity)", "redeem_until": "\(coupon.redeemUntil.map(RFC3339.string) ?? "none")"])
            return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
        case .notFound: throw CouponProblem.couponNotFound
        case .belowIssued(let issued): throw CouponProblem.quantityBelowIssued(issued: issued)
        }
    }

    /// Refusals are answered, not thrown: after a sell-out nearly every request is one, and the
    /// problem's bytes are ready (`CouponProblem`).
    @Sendable func issue(_ request: Request, context: Context) async throws -> Response {
        let caller = try access.caller(of: request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let userID = try caller.issuingUser(named: RequestParser.issueUser(from: try await request.jsonBody()))
        let answer: any ResponseGenerator =
            switch try await issuer.issue(couponID: id, userID: userID) {
            case .issued(let ticket): TicketResponse(ticket, status: .created)
            case .held(let ticket): TicketResponse(ticket)
            case .soldOut: CouponProblem.soldOut
            case .notStarted: CouponProblem.notStarted
            case .ended: CouponProblem.ended
            case .couponNotFound: CouponProblem.couponNotFound
            }
        return try answer.response(from: request, context: context)
    }

    /// Back-office grants: the same `issue_tickets` and rules as a sale, in transactions of up to
    /// 1,000 users; one result per user asked, in the order asked.
    @Sendable func grant(_ request: Request, context: Context) async throws -> GrantsResponse {
        try admin.check(request)
        let id = try RequestParser.couponID(context.parameters.get("id"))
        let users = try RequestParser.grantedUsers(from: try await request.jsonBody(upTo: RequestParser.maxGrantBodyBytes))
        let results = try await database.adminWrite { try await issuer.grant(couponID: id, userIDs: users) }
        if results.first?.outcome == .couponNotFound { throw CouponProblem.couponNotFound }
        let issued = results.count { if case .issued = $0.outcome { true } else { false } }
        context.logger.info("tickets granted", metadata: ["coupon_id": "\(id)", "asked": "\(users.count)", "issued": "\(issued)"])
        return GrantsResponse(results: results)
    }
}
