# Contact sheets, the loss summary and its plot.


rule sheet:
    input:
        runs=lambda wc: all_runs("png", wc.content),
        content=lambda wc: resized("content", wc.content),
        styles=[resized("style", s) for s in sorted(STYLE)],
    output:
        report(
            "results/sheets/{content}.jpg",
            caption="../report/sheet.rst",
            category="Contact sheets",
            labels={"content": "{content}"},
        ),
    log:
        "results/logs/sheet/{content}.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
        args=sheet_args,
    shell:
        "{params.gatys} sheet -o {output:q} {params.args} 2> {log:q}"


rule overview:
    input:
        runs=all_runs("png"),
        contents=[resized("content", c) for c in sorted(CONTENT)],
        styles=[resized("style", s) for s in sorted(STYLE)],
    output:
        report(
            "results/sheets/overview.jpg",
            caption="../report/overview.rst",
            category="Contact sheets",
            labels={"content": "all"},
        ),
    log:
        "results/logs/sheet/overview.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
        args=overview_args,
    shell:
        "{params.gatys} sheet -o {output:q} {params.args} 2> {log:q}"


rule summarize:
    input:
        losses=all_runs("losses.csv"),
        provenance=all_runs("json"),
    output:
        summary=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary"},
        ),
        plot=report(
            "results/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Summary",
            labels={"table": "loss curves"},
        ),
    log:
        "results/logs/summarize.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
    shell:
        "{params.gatys} summarize {input.losses:q} -o {output.summary:q} --plot {output.plot:q} 2> {log:q}"
