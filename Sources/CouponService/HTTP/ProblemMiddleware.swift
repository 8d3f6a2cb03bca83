import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

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
