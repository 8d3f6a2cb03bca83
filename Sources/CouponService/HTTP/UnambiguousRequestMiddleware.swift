import Hummingbird

/// Refuses, before any route reads it, a request that two readers could read differently: a query
/// parameter named twice (one framework takes the first value, another the last), and a body longer
/// than any route takes, however long its `Content-Length` says (past 2^63 it does not fit an `Int`,
/// and the connection would wait for bytes that never come).
struct UnambiguousRequestMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let name = Self.repeatedParameter(in: request.uri.query) {
            throw CouponProblem.invalidRequest("query parameter '\(name)' appears more than once")
        }
        if request.headers.contentLength(exceeds: RequestParser.maxGrantBodyBytes) { throw CouponProblem.bodyTooLarge }
        return try await next(request, context)
    }

    /// The first parameter name a query string gives twice, percent-decoded; nil when none does.
    static func repeatedParameter(in query: String?) -> String? {
        guard let query, !query.isEmpty else { return nil }
        var names: Set<String> = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let raw = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let name = String(raw).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(raw)
            if !names.insert(name).inserted { return name }
        }
        return nil
    }
}

extension HTTPFields {
    /// Whether `Content-Length` (digits, as the HTTP parser let them through) says more than `limit`
    /// bytes, also when it is too long for an `Int`.
    func contentLength(exceeds limit: Int) -> Bool {
        guard let text = self[.contentLength] else { return false }
        guard let length = Int(text) else { return text.utf8.allSatisfy { (0x30...0x39).contains($0) } }
        return length > limit
    }
}
