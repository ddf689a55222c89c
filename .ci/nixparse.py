"""A reader for the output of `nix-instantiate --parse` (Nix 2.8).

Nix's own parser does the hard part: `--parse` prints the expression back
desugared and fully parenthesised, so this module only has to read that
normal form, not Nix's surface syntax:

  * attribute paths are nested: `a.b.c = x; a.d = y;` prints as
    `a = { b = { c = x; }; d = y; };` (one name per binding);
  * `inherit (e) x;` prints as `x = (e).x;`; plain `inherit x;` stays;
  * strings with antiquotations print as `("a" + e + "b")`, indented
    strings as ordinary escaped strings; `-`, `*`, `/`, `<` are calls of
    `__sub`, `__mul`, `__div`, `__lessThan`; `<p>` is `__findFile`;
  * relative paths print absolute; comments are gone;
  * binding names print bare when they are identifiers, quoted otherwise;
    a dynamic name prints as `"${e}"`.

The AST is made of small tuples; see the constructors below.
"""
import hashlib
import os
import re
import subprocess

# AST constructors: (kind, ...)
#   ("var", name) ("str", text) ("num", text) ("path", text)
#   ("list", [items]) ("attrs", rec, [(name_or_None, dyn_expr_or_None, value)], [inherited names])
#   ("lambda", arg_name_or_None, formals_or_None, ellipsis, body)
#   ("call", fn, [args]) ("select", expr, [names], default) ("hasattr", expr, [names])
#   ("let", [(name, value)], body) ("with", env, body) ("if", c, t, e) ("assert", c, body)
#   ("binop", op, left, right) ("not", e) ("concat", [parts])

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'\-]*")
NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
PATH = re.compile(r"/[^\s;()\[\]{}]*")
KEYWORDS = {"let", "in", "with", "if", "then", "else", "assert", "rec", "inherit", "or"}
OPERATORS = ["...", "->", "||", "&&", "==", "!=", "//", "++", "<=", ">=",
             "(", ")", "{", "}", "[", "]", ";", ":", "=", "@", ",", ".", "?", "!", "+", "<", ">", "-", "*"]


class ParseError(Exception):
    pass


class Reader:
    def __init__(self, text, name="<input>"):
        self.s = text
        self.i = 0
        self.name = name

    # ---------------------------------------------------------- lexing
    def ws(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def error(self, msg):
        raise ParseError(f"{self.name}: {msg} at offset {self.i}: {self.s[self.i:self.i + 60]!r}")

    def peek(self):
        """The next token as (kind, text), without consuming it."""
        self.ws()
        if self.i >= len(self.s):
            return ("eof", "")
        c = self.s[self.i]
        if c == '"':
            return ("str", '"')
        if c == "/":  # paths print absolute
            return ("path", PATH.match(self.s, self.i).group(0))
        m = NUMBER.match(self.s, self.i)
        if c.isdigit() and m:
            return ("num", m.group(0))
        m = IDENT.match(self.s, self.i)
        if m:
            word = m.group(0)
            return ("kw" if word in KEYWORDS else "id", word)
        for op in OPERATORS:
            if self.s.startswith(op, self.i):
                return ("op", op)
        self.error("unknown token")

    def take(self, text=None):
        kind, tok = self.peek()
        if text is not None and tok != text:
            self.error(f"expected {text!r}")
        if kind == "str":
            return kind, self.string()
        self.i += len(tok)
        return kind, tok

    def at(self, text):
        return self.peek()[1] == text and self.peek()[0] in ("op", "kw")

    def string(self):
        """A printed string literal; returns its value. Dynamic names
        (`"${e}"`) are not handled here (see name())."""
        assert self.s[self.i] == '"'
        self.i += 1
        out = []
        esc = {"n": "\n", "r": "\r", "t": "\t"}
        while True:
            if self.i >= len(self.s):
                self.error("unterminated string")
            c = self.s[self.i]
            if c == "\\":
                nxt = self.s[self.i + 1]
                out.append(esc.get(nxt, nxt))
                self.i += 2
            elif c == '"':
                self.i += 1
                return "".join(out)
            else:
                out.append(c)
                self.i += 1

    # ---------------------------------------------------------- names
    def binding_name(self):
        """A binding's name: (name, None) or (None, dynamic_expr)."""
        self.ws()
        if self.s.startswith('"${', self.i):
            self.i += 3
            e = self.expr()
            self.ws()
            if not self.s.startswith('}"', self.i):
                self.error("expected }\" after a dynamic name")
            self.i += 2
            return None, e
        if self.s[self.i] == '"':  # a name that is not an identifier prints quoted
            return self.string(), None
        end = self.s.find(" = ", self.i)
        if end < 0:
            self.error("binding without ' = '")
        name = self.s[self.i:end]
        self.i = end + 1
        return name, None

    def select_name(self):
        self.ws()
        if self.s.startswith('"${', self.i):
            self.i += 3
            self.expr()
            self.ws()
            if not self.s.startswith('}"', self.i):
                self.error("expected }\" after a dynamic name")
            self.i += 2
            return None
        if self.s[self.i] == '"':
            return self.string()
        m = IDENT.match(self.s, self.i)
        if not m:
            self.error("expected an attribute name")
        self.i = m.end()
        return m.group(0)

    # ---------------------------------------------------------- grammar
    def expr(self):
        kind, tok = self.peek()
        if kind == "kw" and tok == "let":
            self.take("let")
            binds, _ = self.bindings(stop="in")
            self.take("in")
            return ("let", [(n, v) for n, _d, v in binds], self.expr())
        if kind == "kw" and tok == "with":
            self.take("with")
            env = self.expr()
            self.take(";")
            return ("with", env, self.expr())
        if kind == "kw" and tok == "assert":
            self.take("assert")
            cond = self.expr()
            self.take(";")
            return ("assert", cond, self.expr())
        if kind == "kw" and tok == "if":
            self.take("if")
            c = self.expr()
            self.take("then")
            t = self.expr()
            self.take("else")
            return ("if", c, t, self.expr())
        lam = self.try_lambda()
        if lam is not None:
            return lam
        return self.binop(0)

    def try_lambda(self):
        start = self.i
        kind, tok = self.peek()
        if kind == "id":
            self.take()
            if self.at(":"):
                self.take(":")
                return ("lambda", tok, None, False, self.expr())
            if self.at("@"):
                self.take("@")
                formals, ellipsis = self.formals()
                self.take(":")
                return ("lambda", tok, formals, ellipsis, self.expr())
            self.i = start
            return None
        if tok == "{" and self.looks_like_formals():
            formals, ellipsis = self.formals()
            arg = None
            if self.at("@"):
                self.take("@")
                arg = self.take()[1]
            self.take(":")
            return ("lambda", arg, formals, ellipsis, self.expr())
        return None

    def looks_like_formals(self):
        start = self.i
        try:
            self.take("{")
            kind, tok = self.peek()
            if tok == "...":
                return True
            if tok == "}":
                self.take("}")
                return self.at(":") or self.at("@")
            if kind != "id":
                return False
            self.take()
            return self.peek()[1] in (",", "?", "}") and self.peek()[0] == "op"
        finally:
            self.i = start

    def formals(self):
        self.take("{")
        names, ellipsis = [], False
        while not self.at("}"):
            if self.at("..."):
                self.take("...")
                ellipsis = True
            else:
                name = self.take()[1]
                default = None
                if self.at("?"):
                    self.take("?")
                    default = self.expr()
                names.append((name, default))
            if self.at(","):
                self.take(",")
        self.take("}")
        return names, ellipsis

    BINARY = [  # (operators, right-associative), lowest precedence first
        (["->"], True), (["||"], False), (["&&"], False), (["==", "!="], False),
        (["<", ">", "<=", ">="], False), (["//"], True), (["+", "-"], False),
        (["*"], False), (["++"], True),
    ]

    def binop(self, level):
        if level == len(self.BINARY):
            return self.unary()
        ops, right = self.BINARY[level]
        left = self.binop(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            op = self.take()[1]
            r = self.binop(level if right else level + 1)
            if op == "+":
                parts = left[1] if left[0] == "concat" else [left]
                left = ("concat", parts + [r])
            else:
                left = ("binop", op, left, r)
        return left

    def unary(self):
        if self.at("!"):
            self.take("!")
            return ("not", self.unary())
        if self.at("-"):
            self.take("-")
            return ("call", ("var", "__sub"), [("num", "0"), self.unary()])
        e = self.application()
        if self.at("?"):
            self.take("?")
            names = [self.select_name()]
            while self.at("."):
                self.take(".")
                names.append(self.select_name())
            return ("hasattr", e, names)
        return e

    def application(self):
        fn = self.select()
        args = []
        while True:
            kind, tok = self.peek()
            if kind in ("id", "num", "str", "path") or (kind == "kw" and tok == "rec") \
                    or (kind == "op" and tok in ("(", "[", "{")):
                args.append(self.select())
            else:
                break
        return ("call", fn, args) if args else fn

    def select(self):
        e = self.atom()
        if self.at("."):
            names = []
            while self.at("."):
                self.take(".")
                names.append(self.select_name())
            default = None
            if self.at("or"):
                self.take("or")
                default = self.select()
            return ("select", e, names, default)
        return e

    def atom(self):
        kind, tok = self.peek()
        if kind == "id":
            self.take()
            return ("var", tok)
        if kind == "num":
            self.take()
            return ("num", tok)
        if kind == "path":
            self.take()
            return ("path", tok)
        if kind == "str":
            return ("str", self.take()[1])
        if tok == "(":
            self.take("(")
            e = self.expr()
            self.take(")")
            return e
        if tok == "[":
            self.take("[")
            items = []
            while not self.at("]"):
                items.append(self.select())
            self.take("]")
            return ("list", items)
        if tok == "rec":
            self.take("rec")
            return self.attrs(True)
        if tok == "{":
            return self.attrs(False)
        self.error("expected an expression")

    def attrs(self, rec):
        self.take("{")
        binds, inherits = self.bindings(stop="}")
        self.take("}")
        return ("attrs", rec, binds, inherits)

    def bindings(self, stop):
        binds, inherits = [], []
        while True:
            self.ws()
            if self.at(stop):
                return binds, inherits
            if self.peek() == ("kw", "inherit"):
                self.take("inherit")
                src = None
                if self.at("("):
                    self.take("(")
                    src = self.expr()
                    self.take(")")
                while not self.at(";"):
                    name = self.select_name()
                    if src is None:
                        inherits.append(name)
                    else:
                        binds.append((name, None, ("select", src, [name], None)))
                self.take(";")
                continue
            name, dyn = self.binding_name()
            self.take("=")
            value = self.expr()
            self.take(";")
            binds.append((name, dyn, value))


def parse_text(text, name="<input>"):
    r = Reader(text, name)
    e = r.expr()
    r.ws()
    if r.i != len(r.s):
        r.error("trailing input")
    return e


_CACHE = {}


def parse_file(path):
    """Parse a .nix file through `nix-instantiate --parse` (cached by path
    and content, so repeated checks in one process parse each file once)."""
    with open(path, "rb") as f:
        key = (os.path.abspath(path), hashlib.sha256(f.read()).hexdigest())
    if key not in _CACHE:
        out = subprocess.run(["nix-instantiate", "--parse", path], check=True,
                             capture_output=True, text=True).stdout
        _CACHE[key] = parse_text(out, path)
    return _CACHE[key]
