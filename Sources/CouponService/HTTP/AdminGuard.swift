import Hummingbird

/// Admin routes need `Authorization: Bearer <admin token>`; with no token configured they are closed.
/// A user's JWT is not an admin token: it gets 401 like any other wrong credential.
struct AdminGuard: Sendable {
    let token: SharedSecret?

    func check(_ request: Request) throws(CouponProblem) {
        guard let token else { throw .adminDisabled }
        guard let credential = request.bearerCredential, token.matches(credential) else { throw .unauthorized }
    }
}
