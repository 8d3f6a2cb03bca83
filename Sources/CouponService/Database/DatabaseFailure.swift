import PostgresNIO

/// Decides which database errors mean "the database is unreachable" (503, retry) rather than a bug.
enum DatabaseFailure {
    static func problem(for error: any Error) -> CouponProblem? {
        isUnavailable(error) ? .unavailable : nil
    }

    /// An error as the logs show it: for PostgreSQL's, the code, SQLSTATE, message and the statement's
    /// text, never its bind values (a user's id, an order's) nor the server's detail, which quotes them.
    static func logged(_ error: any Error) -> String {
        switch error {
        case let error as PSQLError:
            var parts = ["code: \(error.code)"]
            if let state = error.serverInfo?[.sqlState] { parts.append("sqlstate: \(state)") }
            if let message = error.serverInfo?[.message] { parts.append("message: \(message)") }
            if let sql = error.query?.sql { parts.append("statement: \(sql)") }
            return "PSQLError(\(parts.joined(separator: ", ")))"
        case let error as PostgresTransactionError:
            let parts = [("begin", error.beginError), ("closure", error.closureError), ("commit", error.commitError), ("rollback", error.rollbackError)]
                .compactMap { name, error in error.map { "\(name): \(logged($0))" } }
            return "PostgresTransactionError(\(parts.joined(separator: ", ")))"
        default:
            return String(reflecting: error)
        }
    }

    static func isUnavailable(_ error: any Error) -> Bool {
        switch error {
        case is DeadlineExceeded:
            return true
        case let error as PostgresTransactionError:
            return [error.beginError, error.closureError, error.commitError].contains { $0.map(isUnavailable) ?? false }
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
                return true
            case .server:
                // Class 08: connection exception; 57P01..57P03: shutdown, crash recovery, cannot connect
                // now; 25006: a read-only transaction, from a server that is (or turned into) a standby,
                // which PrimaryDatabase leaves at its next check.
                let state = error.serverInfo?[.sqlState] ?? ""
                return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300", "25006"].contains(state)
            default:
                return false
            }
        default:
            return false
        }
    }
}
