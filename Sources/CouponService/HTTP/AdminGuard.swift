import Hummingbird

/// Admin routes need `Authorization: Bearer <admin token>`; with no token configured they are closed.
/// A user's JWT is not an admin token: it gets 401 like any other wrong credential. A few routes also
/// take one service's token (the events' reader, the checkout).
struct AdminGuard: Sendable {
    let token: ServiceTokens?

    func check(_ request: Request) throws(CouponProblem) {
        guard let token else { throw .adminDisabled }
        guard let credential = request.bearerCredential, token.matches(credential) else { throw .unauthorized }
    }

    /// Passes the admin token, or `service`'s (named `name` in the refusal).
    func check(_ request: Request, or service: ServiceTokens?, name: String) throws(CouponProblem) {
        guard token != nil || service != nil else { throw .adminDisabled }
        guard let credential = request.bearerCredential else { throw .unauthorized(orThe: name) }
        let admin = token?.matches(credential) ?? false
        let other = service?.matches(credential) ?? false
        guard admin || other else { throw .unauthorized(orThe: name) }
    }
}
