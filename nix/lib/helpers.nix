# The few nixpkgs-lib functions nix/lib needs, written with builtins only,
# so that the renderers (and their golden tests) evaluate with a bare
# `nix-instantiate --eval --strict`: no nixpkgs is reachable where CI runs.
# Names and semantics follow nixpkgs lib/{attrsets,strings,lists}.nix.
let
  inherit (builtins)
    attrNames concatStringsSep elem filter foldl' isAttrs isBool isInt isList
    isString length listToAttrs stringLength substring typeOf;
in
rec {
  mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (attrNames attrs);

  filterAttrs = pred: attrs:
    listToAttrs (map (n: { name = n; value = attrs.${n}; })
      (filter (n: pred n attrs.${n}) (attrNames attrs)));

  concatMapStrings = f: list: concatStringsSep "" (map f list);

  optional = cond: x: if cond then [ x ] else [ ];

  optionals = cond: list: if cond then list else [ ];

  optionalAttrs = cond: attrs: if cond then attrs else { };

  unique = list: foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] list;

  # Items that occur more than once, each reported once, in first-seen order.
  duplicates = list: unique (filter (x: length (filter (y: y == x) list) > 1) list);

  max = a: b: if a > b then a else b;

  hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;

  # Lines joined and terminated by a newline, like a text file on disk.
  unlines = concatMapStrings (l: l + "\n");

  # A scalar the way the Pi firmware and kubelet flags spell it: booleans as 1/0.
  scalarToString = v:
    if isBool v then (if v then "1" else "0")
    else if isInt v || isString v then toString v
    else throw "helpers.scalarToString: unsupported value of type ${typeOf v}";

  # A value rendered as Nix-like text, for diff-friendly test failures.
  show = v:
    if isString v then ''"${v}"''
    else if isAttrs v then "{ " + concatStringsSep " " (mapAttrsToList (n: x: "${n} = ${show x};") v) + " }"
    else if isList v then "[ " + concatStringsSep " " (map show v) + " ]"
    else if isBool v then (if v then "true" else "false")
    else if v == null then "null"
    else toString v;
}
