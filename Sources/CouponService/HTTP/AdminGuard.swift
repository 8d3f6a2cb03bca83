import Hummingbird

/// Admin routes need `Authorization: Bearer <token>`; with no token configured they are closed.
struct AdminGuard: Sendable {
    let token: String?

    func check(_ request: Request) throws(CouponProblem) {
        guard let token else { throw .adminDisabled }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            Self.constantTimeEqual(Array(header.utf8.dropFirst(7)), Array(token.utf8))
        else { throw .unauthorized }
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
