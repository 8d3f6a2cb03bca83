import Foundation
import Hummingbird
import Logging
import PostgresNIO

/// The HTTP API. Handlers parse, call one store or the issuer, and map the result.
struct CouponController<Context: RequestContext>: Sendable {
    let coupons: CouponStore
    let tickets: TicketStore
    let issuer: TicketIssuer
    let catalogue: CouponCatalogue
    let admin: AdminGuard
    let database: DatabaseGate

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/coupons", use: create)
        router.get("/v1/coupons/:id", use: show)
        router.patch("/v1/coupons/:id", use: resize)
        router.post("/v1/coupons/:id/issue", use: issue)
        router.get("/v1/coupons/:id/tickets/:user_id", use: ticket)
        router.refuseOtherMethods(on: "/v1/coupons", allowed: [.post])
        router.refuseOtherMethods(on: "/v1/coupons/:id", allowed: [.get, .patch])
        router.refuseOtherMethods(on: "/v1/coupons/:id/issue", allowed: [.post])
        router.refuseOtherMethods(on: "/v1/coupons/:id/tickets/:user_id", allowed: [.get])
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> EditedResponse<CouponResponse> {
        try admin.check(request)
        let new = try CouponRequests.newCoupon(from: try await request.jsonBody())
        let coupon = try await database.long {
            try await coupons.create(name: new.name, quantity: new.quantity, startsAt: new.startsAt, endsAt: new.endsAt)
        }
        catalogue.record(coupon)
        context.logger.info("coupon created", metadata: ["coupon_id": "\(coupon.id)", "quantity": "\(coupon.quantity)"])
        return EditedResponse(
            status: .created, headers: [.location: "/v1/coupons/\(coupon.id)"],
            response: CouponResponse(coupon: coupon, now: catalogue.clock.reading().now))
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> CouponResponse {
        let id = try CouponRequests.couponID(context.parameters.get("id"))
        guard let coupon = try await database.short({ try await coupons.find(id: id) }) else {
            throw CouponProblem.couponNotFound
        }
        return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
    }

    @Sendable func resize(_ request: Request, context: Context) async throws -> CouponResponse {
        try admin.check(request)
        let id = try CouponRequests.couponID(context.parameters.get("id"))
        let quantity = try CouponRequests.newQuantity(from: try await request.jsonBody())
        switch try await database.long({ try await coupons.resize(id: id, quantity: quantity) }) {
        case .resized(let coupon):
            catalogue.record(coupon)
            context.logger.info("coupon resized", metadata: ["coupon_id": "\(id)", "quantity": "\(quantity)"])
            return CouponResponse(coupon: coupon, now: catalogue.clock.reading().now)
        case .notFound: throw CouponProblem.couponNotFound
        case .belowIssued(let issued): throw CouponProblem.quantityBelowIssued(issued: issued)
        }
    }

    /// Refusals are answered, not thrown: after a sell-out nearly every request is one, and the
    /// problem's bytes are ready (`CouponProblem`).
    @Sendable func issue(_ request: Request, context: Context) async throws -> Response {
        let id = try CouponRequests.couponID(context.parameters.get("id"))
        let userID = try CouponRequests.issueUser(from: try await request.jsonBody())
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

    @Sendable func ticket(_ request: Request, context: Context) async throws -> TicketResponse {
        let id = try CouponRequests.couponID(context.parameters.get("id"))
        // Path parameters arrive as sent: "a%3Ab" is the user "a:b".
        let userID = try CouponRequests.userID(context.parameters.get("user_id").flatMap { $0.removingPercentEncoding })
        guard let ticket = try await database.short({ try await tickets.ticket(couponID: id, userID: userID) }) else {
            throw CouponProblem.ticketNotFound
        }
        return TicketResponse(ticket)
    }
}
