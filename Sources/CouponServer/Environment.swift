import ArgumentParser
import CouponService
import Foundation

/// Every option can also be set in the environment, under the name its help gives. This is the one
/// place the environment is read. A value that does not parse stops the command, as a bad option does.
enum Environment {
    private static let variables = ProcessInfo.processInfo.environment

    /// The variable's value, parsed as the option's own value is, or `fallback` when it is not set.
    static func value<Value: ExpressibleByArgument>(_ name: String, or fallback: Value) -> Value {
        guard let text = variables[name], !text.isEmpty else { return fallback }
        guard let value = Value(argument: text) else {
            FileHandle.standardError.write(Data("coupon-server: \(name)='\(text)' is not a valid value\n".utf8))
            exit(64)  // EX_USAGE, as for a bad option
        }
        return value
    }

    /// The option given on the command line, else the variable; nil when neither is set or both are
    /// empty. For URLs and secrets, which `--help` must not print as defaults.
    static func value(_ given: String?, or name: String) -> String? {
        guard let value = given ?? variables[name], !value.isEmpty else { return nil }
        return value
    }
}

extension Environment {
    /// A switch set in the environment: `1`, `true` or `yes` (`0`, `false`, `no` or empty: off). Anything
    /// else stops the command, as a bad option does.
    static func flag(_ name: String) -> Bool {
        switch variables[name]?.lowercased() {
        case nil, "", "0", "false", "no": return false
        case "1", "true", "yes": return true
        case let text?:
            FileHandle.standardError.write(Data("coupon-server: \(name)='\(text)' is not 1 or 0\n".utf8))
            exit(64)
        }
    }

    /// A secret given as itself or in a file (flag first, then variable; the file form keeps it out
    /// of `ps`), at least 32 bytes. A trailing newline of the file is not part of it.
    static func secret(_ given: String?, _ variable: String, file givenFile: String?, _ fileVariable: String, name: String) throws
        -> TokenSource?
    {
        let direct = value(given, or: variable)
        let file = value(givenFile, or: fileVariable)
        if direct != nil, file != nil { throw ValidationError("give the \(name) itself or its file, not both") }
        if let file { return .file(file) }
        if let direct, direct.utf8.count < 32 { throw ValidationError("the \(name) must be at least 32 bytes long") }
        return direct.map(TokenSource.given)
    }
}

/// Durations are given in seconds, fractions allowed.
extension Duration: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        guard let seconds = Double(argument), seconds.isFinite else { return nil }
        self = .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    public var defaultValueDescription: String {
        let (seconds, attoseconds) = components
        return attoseconds == 0 ? "\(seconds)" : "\(Double(seconds) + Double(attoseconds) / 1e18)"
    }
}
