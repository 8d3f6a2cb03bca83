import Hummingbird

/// Who may act for a user: the one place the user routes ask.
///
/// With a JWKS (`--auth-jwks` or `--auth-jwks-url`), a caller is the user its verified bearer JWT names, or the
/// checkout, whose service token (`--checkout-token`) may touch any user's ticket but issues none.
/// Without one, the service trusts the user named in the body or the path, as a deployment behind
/// an authenticating gateway does.
struct UserAccess: Sendable {
    /// Nil: trusted mode.
    let tokens: TokenVerifier?
    let checkout: ServiceTokens?

    enum Caller: Sendable, Equatable {
        case user(String)
        case checkout
        /// Trusted mode: whoever the request names.
        case anyone
    }

    func caller(of request: Request) async throws(CouponProblem) -> Caller {
        guard let tokens else { return .anyone }
        guard let credential = request.bearerCredential else {
            throw .invalidToken("This route needs 'Authorization: Bearer <token>'.")
        }
        if let checkout, checkout.matches(credential) { return .checkout }
        return .user(try await tokens.user(of: credential))
    }
}

extension UserAccess.Caller {
    /// The user a ticket is issued to: the body's `user_id` in trusted mode; the token's user
    /// otherwise, which the body may name again but not change. The checkout issues nothing.
    func issuingUser(named: String?) throws(CouponProblem) -> String {
        switch self {
        case .anyone:
            guard let named else { throw .invalidRequest("field 'user_id' is required") }
            return named
        case .user(let user):
            guard named == nil || named == user else { throw .forbidden }
            return user
        case .checkout:
            throw .forbidden
        }
    }

    /// The one user this caller may act for; nil when it may act for any (the checkout, trusted mode).
    var onlyUser: String? {
        if case .user(let user) = self { return user }
        return nil
    }

    /// Passes when this caller may read or change `user`'s tickets.
    func check(actsFor user: String) throws(CouponProblem) {
        if case .user(let caller) = self, caller != user { throw .forbidden }
    }
}
