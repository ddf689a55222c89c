# Golden tests of nix/lib. Run with:
#   nix-instantiate --eval --strict nix/tests
# Each test file returns a list of { name; actual; expected; }. A mismatch
# aborts the evaluation (non-zero exit) with every failing test's expected
# and actual value, so the diff is in the CI log.
let
  lib = import ../lib;
  files = [ ./config-txt.nix ./kubelet.nix ./site.nix ./monitoring.nix ./pi-boot.nix ];
  tests = builtins.concatMap
    (f: map (t: t // { file = baseNameOf (toString f); }) (import f { inherit lib; }))
    files;
  failed = builtins.filter (t: t.actual != t.expected) tests;
  report = t: ''
    FAIL ${t.file}: ${t.name}
      expected: ${lib.helpers.show t.expected}
      actual:   ${lib.helpers.show t.actual}
  '';
  summary = "golden: ${toString (builtins.length tests - builtins.length failed)} passed, ${toString (builtins.length failed)} failed";
in
if failed == [ ] then summary
else throw ("\n" + lib.helpers.concatMapStrings report failed + summary)
