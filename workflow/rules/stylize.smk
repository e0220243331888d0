# The GPU step: one run = one process = one GPU.


# Each style image's Gram targets, once for every preset that shares them (seconds, local).
rule style_targets:
    input:
        style=lambda wc: resized("style", wc.style),
        weights=weights_file(),
    output:
        "results/targets/{key}/{style}.pt",
    log:
        "results/logs/targets/{key}/{style}.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
        settings=targets_args,
        version=GATYS_VERSION,
    shell:
        "{params.gatys} targets {input.style:q} -o {output:q} "
        "--backbone {input.weights:q} {params.settings} 2> {log:q}"


rule stylize:
    input:
        content=lambda wc: resized("content", wc.content),
        style=lambda wc: resized("style", wc.style),
        weights=weights_file(),
        targets=style_targets_file,
    output:
        image=report(
            "results/runs/{preset}/{content}/{style}.png",
            caption="../report/stylized.rst",
            category="Stylized images",
            subcategory="{content}",
            labels={"content": "{content}", "style": "{style}", "preset": "{preset}"},
        ),
        losses="results/runs/{preset}/{content}/{style}.losses.csv",
        provenance="results/runs/{preset}/{content}/{style}.json",
    log:
        "results/logs/stylize/{preset}/{content}/{style}.log",
    benchmark:
        "results/benchmarks/stylize/{preset}/{content}/{style}.tsv"
    conda:
        "../../environment.yml"
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    params:
        gatys=GATYS,
        settings=stylize_args,
        targets=style_targets_flag,
        version=GATYS_VERSION,
    shell:
        "{params.gatys} stylize {input.content:q} {input.style:q} -o {output.image:q} "
        "--losses {output.losses:q} --provenance {output.provenance:q} "
        "--backbone {input.weights:q} --threads {threads} {params.settings} {params.targets} "
        "--label preset={wildcards.preset:q} --label content={wildcards.content:q} "
        "--label style={wildcards.style:q} --quiet 2> {log:q}"
