# gatys: a gallery of neural style transfers (Gatys, Ecker & Bethge, CVPR 2016).
# Every content image x every style image x every preset in config.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/stylize.smk"
include: "workflow/rules/gallery.smk"


# Cheap steps run where Snakemake runs (seconds each, and `weights` may need the internet
# that compute nodes lack); only `stylize` is submitted to a cluster.
localrules:
    all,
    weights,
    resize,
    style_targets,
    skipped,
    sheet,
    overview,
    summarize,


rule all:
    default_target: True
    input:
        all_outputs,
