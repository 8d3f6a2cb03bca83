// Every request's way to its route: its context, and the middlewares `buildRouter` puts in front of
// every route (failures as problems, ambiguous requests refused).
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// The request context of every route: answers are JSON with a stable key order.
struct CouponRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    var responseEncoder: JSONEncoder { .coupon }
}

extension JSONEncoder {
    /// Sorted keys so that the same answer is the same bytes; no escaped slashes in media types.
    static let coupon: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

/// Turns every failure into a problem answer, so clients see one error shape whatever failed.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as CouponProblem {
            throw problem
        } catch let error as HTTPError {
            throw Self.problem(for: error)
        } catch is NIOTooManyBytesError {
            throw CouponProblem.bodyTooLarge
        } catch let busy as AdminWritesBusy {
            throw CouponProblem.adminBusy(limit: busy.limit)
        } catch is RequestDeadlineExceeded {
            throw CouponProblem.requestTimeout
        } catch let error as HTTPParserError {
            // A body whose framing breaks (a chunk size that is not hex, a missing CRLF, a connection
            // closed mid-body): the client's fault, and a stranger's garbage must not page anyone.
            context.logger.debug("request framing broken", metadata: ["error": "\(error)"])
            throw CouponProblem.invalidRequest("the request's framing is broken: \(error)")
        } catch {
            if let problem = DatabaseFailure.problem(for: error) { throw problem }
            context.logger.error("request failed", metadata: ["error": "\(DatabaseFailure.logged(error))"])
            throw CouponProblem.internalError
        }
    }

    static func problem(for error: HTTPError) -> CouponProblem {
        switch error.status {
        case .notFound: .routeNotFound
        case .methodNotAllowed: .methodNotAllowed
        case .contentTooLarge: .bodyTooLarge
        default:
            CouponProblem(
                status: error.status, code: error.status.code < 500 ? .invalidRequest : .internal,
                detail: error.body ?? error.status.reasonPhrase)
        }
    }
}

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
