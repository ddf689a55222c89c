# series.nix keep-lists -> Prometheus relabel rules (metric_relabel_configs,
# write_relabel_configs). Prometheus anchors every relabel regex (^...$) and
# uses RE2, which has no negative look-ahead; "keep only these values of this
# label for these metrics" is therefore written as: mark the wanted series
# with a temporary label, drop the unmarked ones, remove the mark.
{ helpers }:
let
  inherit (builtins) concatMap concatStringsSep replaceStrings;
  inherit (helpers) optional unique;

  escape = replaceStrings [ "." "+" "*" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" ] [ "\\." "\\+" "\\*" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" ];
  alternatives = list: concatStringsSep "|" (map escape list);
  mark = "__tmp_edgewatch_keep";
in
rec {
  inherit alternatives escape;

  # Keep exactly `names` (metric names).
  keepNames = names: { source_labels = [ "__name__" ]; regex = alternatives names; action = "keep"; };

  labelFilterRules = filters:
    let filtered = unique (concatMap (f: f.metrics) filters);
    in
    if filters == [ ] then [ ]
    else
      map
        (f: {
          source_labels = [ "__name__" f.label ];
          regex = "(${alternatives f.metrics});(${alternatives f.keep})";
          target_label = mark;
          replacement = "1";
          action = "replace";
        })
        filters
      ++ [
        { source_labels = [ "__name__" mark ]; regex = "(${alternatives filtered});"; action = "drop"; }
        { regex = mark; action = "labeldrop"; }
      ];

  # The metric_relabel_configs of one job of series.nix.
  forJob = job:
    [ (keepNames job.metrics) ]
    ++ labelFilterRules job.labelFilters
    ++ optional (job.dropLabels != [ ]) { regex = alternatives job.dropLabels; action = "labeldrop"; };
}
