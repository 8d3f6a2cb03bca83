import Hummingbird

extension Router {
    /// 405 with `Allow` for the methods a path does not serve, where the router alone would say 404.
    /// HEAD is left to the router on paths that serve GET.
    func refuseOtherMethods(on path: RouterPath, allowed: [HTTPRequest.Method]) {
        let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options, .trace, .connect, .query]
        for method in methods where !allowed.contains(method) && !(method == .head && allowed.contains(.get)) {
            on(path, method: method) { _, _ -> Response in throw CouponProblem.methodNotAllowed(allow: allowed) }
        }
    }
}

extension HTTPRequest.Method {
    /// The safe, body-carrying QUERY method (IETF httpbis draft); fuzzers try it.
    static let query = HTTPRequest.Method("QUERY")!
}
