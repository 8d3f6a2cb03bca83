import Hummingbird

extension Router {
    /// One row of the route table: a path, written once, with the handler of each method it serves.
    /// Every other method is answered 405 with `Allow` naming those (HEAD is left to the router where
    /// GET is served), where the router alone would say 404.
    func route(_ path: RouterPath, _ methods: (inout PathMethods<Context>) -> Void) {
        var served = PathMethods(router: self, path: path)
        methods(&served)
        let allowed = served.allowed
        let others: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options, .trace, .connect, .query]
        for method in others where !allowed.contains(method) && !(method == .head && allowed.contains(.get)) {
            on(path, method: method) { _, _ -> Response in throw CouponProblem.methodNotAllowed(allow: allowed) }
        }
    }
}

/// The methods one path of the route table serves.
struct PathMethods<Context: RequestContext> {
    fileprivate let router: Router<Context>
    fileprivate let path: RouterPath
    fileprivate(set) var allowed: [HTTPRequest.Method] = []

    fileprivate init(router: Router<Context>, path: RouterPath) {
        self.router = router
        self.path = path
    }

    mutating func on<Output: ResponseGenerator>(
        _ method: HTTPRequest.Method, use handler: @escaping @Sendable (Request, Context) async throws -> Output
    ) {
        router.on(path, method: method, use: handler)
        allowed.append(method)
    }
}

extension HTTPRequest.Method {
    /// The safe, body-carrying QUERY method (IETF httpbis draft); fuzzers try it.
    static let query = HTTPRequest.Method("QUERY")!
}
