@testable import CouponService
import Foundation
import Testing

/// The Citus restrictions this project has met, held against every migration and function file and
/// the SQL the stores send. CI runs on plain PostgreSQL, where none of them fails; each rule names the
/// error a cluster answers when it is broken (scripts/citus-check.sh runs the files on a real one).
@Suite struct CitusRestrictionTests {
    /// A file as the rules read it: its SQL without comments (for a Swift file, its string literals).
    struct SQLFile: Sendable {
        var name: String
        /// The version of a versioned migration; nil for a function file or a Swift source.
        var version: Int?
        var sql: String

        init(name: String, version: Int?, text: String) {
            self.name = name
            self.version = version
            self.sql = name.hasSuffix(".swift") ? Self.stringLiterals(of: text) : Self.withoutComments(text)
        }

        static func withoutComments(_ sql: String) -> String {
            sql.replacing(#/--[^\n]*/#, with: "").replacing(#/(?s)/\*.*?\*/#, with: "")
        }

        static func stringLiterals(of swift: String) -> String {
            let code = swift.replacing(#/(?m)^\s*//[^\n]*/#, with: "")
            var literals = code.matches(of: #/(?s)"""(.*?)"""/#).map { String($0.1) }
            let rest = code.replacing(#/(?s)""".*?"""/#, with: "")
            literals += rest.matches(of: #/"((?:[^"\\\n]|\\.)*)"/#).map { String($0.1) }
            return literals.joined(separator: ";\n")
        }

        /// The SQL statements, split at every semicolon (function bodies included): close enough for
        /// rules that look inside one statement.
        var statements: [String] { sql.split(separator: ";").map { String($0) } }

        /// Each `CREATE FUNCTION` of the file: its name and its text up to the next one.
        var functions: [(name: String, text: String)] {
            let starts = sql.matches(of: #/(?i)CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(/#)
            return starts.enumerated().map { index, match in
                let end = index + 1 < starts.count ? starts[index + 1].range.lowerBound : sql.endIndex
                return (String(match.1), String(sql[match.range.lowerBound..<end]))
            }
        }
    }

    struct Rule: Sendable, CustomTestStringConvertible {
        /// A short name the tests below refer to.
        var id: String
        var name: String
        /// What a Citus cluster answers when the rule is broken.
        var citusError: String
        /// One line per place that breaks it; `distributedFrom` is the version that distributes the tables.
        var violations: @Sendable (_ file: SQLFile, _ distributedFrom: Int) -> [String]

        var testDescription: String { name }
    }

    /// The tables distributed by coupon (migrations/0007_distributed_on_citus.sql).
    static var distributedTables: Regex<Substring> { #/(?i)\b(?:coupons|coupon_tickets)\b/# }

    /// Whether a file runs when the tables are already distributed: a function file, or a versioned
    /// migration after the one that distributes them. Swift sources run against the distributed tables too.
    static func runsDistributed(_ file: SQLFile, after distributedFrom: Int) -> Bool {
        file.version.map { $0 > distributedFrom } ?? true
    }

    static let rules: [Rule] = [
        Rule(
            id: "constraint alone",
            name: "an ALTER TABLE that adds a constraint to a distributed table has no other subcommand",
            citusError: "cannot execute ADD CONSTRAINT command with other subcommands (SQLSTATE 0A000)"
        ) { file, distributedFrom in
            guard runsDistributed(file, after: distributedFrom) else { return [] }
            return file.statements.compactMap { statement in
                guard let alter = statement.firstMatch(of: #/(?i)^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?(\w+)\s/#),
                    alter.1.contains(distributedTables)
                else { return nil }
                let subcommands = topLevelParts(of: String(statement[alter.range.upperBound...]))
                let addsConstraint = subcommands.contains {
                    $0.contains(#/(?i)^\s*ADD\s+(?:CONSTRAINT|PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY|EXCLUDE)\b/#)
                }
                return addsConstraint && subcommands.count > 1
                    ? "\(file.name): ALTER TABLE \(alter.1) adds a constraint beside \(subcommands.count - 1) other subcommand(s)" : nil
            }
        },
        Rule(
            id: "no generic plan",
            name: "a function Citus runs is not planned generically (its Citus block sets custom plans)",
            citusError: "could not create distributed plan (DETAIL: Possibly this is caused by the use of parameters in SQL functions)"
        ) { file, _ in
            file.functions.compactMap { name, text in
                guard text.contains(#/(?i)plan_cache_mode\s*=\s*force_generic_plan/#),
                    file.sql.contains(try! Regex("(?i)create_distributed_function\\s*\\(\\s*'\(name)\\("))
                else { return nil }
                let custom = try! Regex(
                    "(?i)ALTER\\s+FUNCTION\\s+\(name)\\s*\\([^)]*\\)\\s+(?:RESET\\s+plan_cache_mode|SET\\s+plan_cache_mode\\s*(?:=|TO)\\s*'?force_custom_plan)")
                return file.sql.contains(custom) ? nil : "\(file.name): \(name) is distributed with force_generic_plan and keeps it there"
            }
        },
        Rule(
            id: "no SQL function",
            name: "a function that reads a distributed table is PL/pgSQL, not SQL",
            citusError: "could not create distributed plan (DETAIL: Possibly this is caused by the use of parameters in SQL functions); "
                + "cannot perform distributed planning on this query because parameterized queries for SQL functions referencing distributed tables are not supported"
        ) { file, _ in
            file.functions.compactMap { name, text in
                guard text.contains(#/(?i)\bLANGUAGE\s+sql\b/#),
                    text.contains(#/(?i)\b(?:FROM|JOIN|UPDATE|INTO)\s+(?:coupons|coupon_tickets|coupon_ticket_states)\b/#)
                else { return nil }
                return "\(file.name): \(name) is a SQL function that reads the coupon tables"
            }
        },
        Rule(
            id: "no volatile",
            name: "a modification of a distributed table calls no volatile function",
            citusError: "functions used in UPDATE queries on distributed tables must not be VOLATILE; "
                + "functions used in the WHERE/ON/WHEN clause of modification queries on distributed tables must not be VOLATILE"
        ) { file, distributedFrom in
            guard runsDistributed(file, after: distributedFrom) else { return [] }
            return file.statements.compactMap { statement in
                // (`FOR UPDATE SKIP LOCKED` in a CTE before the UPDATE names no table.)
                guard let target = statement.matches(of: #/(?i)\b(?:UPDATE|DELETE\s+FROM)\s+(\w+)/#)
                    .first(where: { $0.1.wholeMatch(of: distributedTables) != nil }),
                    let volatile = statement.firstMatch(
                        of: #/(?i)\b(clock_timestamp|timeofday|random|gen_random_uuid|gen_random_bytes|nextval|setval)\s*\(/#)
                else { return nil }
                return "\(file.name): a modification of \(target.1) calls \(volatile.1)()"
            }
        },
        Rule(
            id: "delegated",
            name: "a function that writes or locks a coupon's rows runs on the coupon's worker (distributed by p_coupon_id, colocated with coupons)",
            citusError: "cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or NOTIFY "
                + "(the rows written through the coordinator, then a two-phase commit after the coupon's notification)"
        ) { file, _ in
            file.functions.compactMap { name, text in
                guard text.contains(#/(?i)FUNCTION\s+\w+\s*\(\s*p_coupon_id\b/#),
                    text.contains(#/(?i)\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:coupons|coupon_tickets)\b|\bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b/#)
                else { return nil }
                let distributed = try! Regex(
                    "(?i)create_distributed_function\\s*\\(\\s*'\(name)\\([^']*\\)'\\s*,\\s*'p_coupon_id'\\s*,\\s*colocate_with\\s*=>\\s*'coupons'")
                return file.sql.contains(distributed) ? nil : "\(file.name): \(name) writes a coupon's rows and is not distributed by p_coupon_id"
            }
        },
        Rule(
            id: "unsafe triggers",
            name: "a trigger on a distributed table is created with citus.enable_unsafe_triggers",
            citusError: "triggers are not supported on distributed tables"
        ) { file, distributedFrom in
            guard runsDistributed(file, after: distributedFrom), !file.sql.contains("citus.enable_unsafe_triggers") else { return [] }
            return file.sql.matches(of: #/(?is)CREATE\s+(?:OR\s+REPLACE\s+)?TRIGGER\s+(\w+)\s.*?\bON\s+(\w+)/#)
                .filter { $0.2.wholeMatch(of: distributedTables) != nil }
                .map { "\(file.name): trigger \($0.1) on \($0.2) without citus.enable_unsafe_triggers" }
        },
    ]

    /// The parts of a text separated by commas outside parentheses and quotes.
    static func topLevelParts(of text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        var quoted = false
        for character in text {
            switch character {
            case "'": quoted.toggle()
            case "(" where !quoted: depth += 1
            case ")" where !quoted: depth -= 1
            case "," where !quoted && depth == 0:
                parts.append(current)
                current = ""
                continue
            default: break
            }
            current.append(character)
        }
        parts.append(current)
        return parts
    }

    static let root = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every migration and function file, and every Swift source of the service.
    static func projectFiles() throws -> [SQLFile] {
        let migrations = try Migration.load(from: root.appending(path: "migrations", directoryHint: .isDirectory))
            .map { SQLFile(name: $0.fileName, version: $0.version, text: $0.sql) }
        let sources = root.appending(path: "Sources", directoryHint: .isDirectory)
        let swift = try FileManager.default.subpathsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }.sorted()
            .map { SQLFile(name: "Sources/\($0)", version: nil, text: try String(contentsOf: sources.appending(path: $0), encoding: .utf8)) }
        return migrations + swift
    }

    /// The version of the migration that distributes the tables.
    static func distributingVersion(of files: [SQLFile]) throws -> Int {
        try #require(files.first { $0.version != nil && $0.sql.contains("create_distributed_table") }?.version)
    }

    @Test(arguments: rules) func everyFileKeeps(_ rule: Rule) throws {
        let files = try Self.projectFiles()
        #expect(files.count > 20 && files.contains { $0.name == "functions/issue_tickets.sql" })
        let distributedFrom = try Self.distributingVersion(of: files)
        let found = files.flatMap { rule.violations($0, distributedFrom) }
        #expect(found.isEmpty, "a Citus cluster would answer: \(rule.citusError)\n\(found.joined(separator: "\n"))")
    }

    /// The two statements that broke the cluster on 2026-12-06: 0010 as first written, and
    /// issue_tickets distributed with its generic plan.
    @Test func theStatementsThatBrokeTheClusterAreCaught() throws {
        let files = try Self.projectFiles()
        let distributedFrom = try Self.distributingVersion(of: files)
        let oneStatement = try String(
            contentsOf: Self.root.appending(path: "Tests/Fixtures/migrations-before-citus-split/0010_checkout_by_code.sql"), encoding: .utf8)
        #expect(Self.broken(SQLFile(name: "0010_checkout_by_code.sql", version: 10, text: oneStatement), after: distributedFrom) == ["constraint alone"])

        let issueTickets = try #require(files.first { $0.name == "functions/issue_tickets.sql" })
        let generic = issueTickets.sql.replacing(#/(?i)ALTER\s+FUNCTION\s+issue_tickets\s*\([^)]*\)\s+SET\s+plan_cache_mode[^;]*;/#, with: "")
        #expect(generic != issueTickets.sql, "the setting is where the rule looks for it")
        #expect(Self.broken(SQLFile(name: issueTickets.name, version: nil, text: generic), after: distributedFrom) == ["no generic plan"])
    }

    /// Each rule caught once: a small file that breaks it, and the same file kept.
    @Test(arguments: [
        ("constraint alone", "ALTER TABLE coupons ADD COLUMN note text, ADD CONSTRAINT note_short CHECK (length(note) < 9);",
         "ALTER TABLE coupons ADD COLUMN note text;\nALTER TABLE coupons ADD CONSTRAINT note_short CHECK (length(note) < 9);"),
        ("no SQL function", "CREATE FUNCTION held(p_coupon_id bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(user_id) FROM coupon_tickets WHERE coupon_id = p_coupon_id $$;",
         "CREATE FUNCTION held(p_coupon_id bigint) RETURNS bigint LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN (SELECT count(user_id) FROM coupon_tickets WHERE coupon_id = p_coupon_id); END $$;"),
        ("no volatile", "UPDATE coupon_tickets SET hold_until = NULL WHERE coupon_id = 1 AND hold_until <= clock_timestamp();",
         "UPDATE coupon_tickets SET hold_until = NULL WHERE coupon_id = 1 AND hold_until <= statement_timestamp();"),
        ("delegated", "CREATE FUNCTION forget(p_coupon_id bigint) RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM coupon_tickets WHERE coupon_id = p_coupon_id; END $$;",
         "CREATE FUNCTION forget(p_coupon_id bigint) RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM coupon_tickets WHERE coupon_id = p_coupon_id; END $$;\n"
            + "SELECT create_distributed_function('forget(bigint)', 'p_coupon_id', colocate_with => 'coupons');"),
        ("unsafe triggers", "CREATE TRIGGER noted AFTER INSERT ON coupon_tickets FOR EACH ROW EXECUTE FUNCTION note();",
         "SELECT set_config('citus.enable_unsafe_triggers', 'on', true);\nCREATE TRIGGER noted AFTER INSERT ON coupon_tickets FOR EACH ROW EXECUTE FUNCTION note();"),
    ])
    func aFileThatBreaksTheRuleIsCaught(rule: String, broken: String, kept: String) {
        #expect(Self.broken(SQLFile(name: "0099_example.sql", version: 99, text: broken), after: 7) == [rule])
        #expect(Self.broken(SQLFile(name: "0099_example.sql", version: 99, text: kept), after: 7) == [])
    }

    /// Before the tables are distributed, a file may do what Citus would refuse on them (0006 does).
    @Test func filesBeforeTheDistributionAreNotHeldToIt() {
        let file = SQLFile(name: "0006_example.sql", version: 6, text: "ALTER TABLE coupons ADD COLUMN a int, ADD CONSTRAINT a_positive CHECK (a > 0);")
        #expect(Self.broken(file, after: 7) == [])
    }

    /// A Swift source is read through its string literals: a store's UPDATE with a volatile function is caught.
    @Test func aStoresStatementIsReadFromItsStringLiterals() {
        let swift = #"""
            // UPDATE coupon_tickets SET x = random() in a comment is not SQL
            let cleared = try await client.query(
                """
                UPDATE coupon_tickets SET order_id = NULL
                WHERE coupon_id = \(id) AND hold_until <= clock_timestamp()
                """, logger: logger)
            let n = Int.random(in: 0..<9)
            """#
        #expect(Self.broken(SQLFile(name: "Store.swift", version: nil, text: swift), after: 7) == ["no volatile"])
        #expect(Self.broken(SQLFile(name: "Store.swift", version: nil, text: swift.replacing("clock_timestamp", with: "statement_timestamp")), after: 7) == [])
    }

    /// The rules a file breaks.
    static func broken(_ file: SQLFile, after distributedFrom: Int) -> [String] {
        rules.filter { !$0.violations(file, distributedFrom).isEmpty }.map(\.id)
    }
}
