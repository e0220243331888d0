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


rule all:
    default_target: True
    input:
        all_outputs(),
