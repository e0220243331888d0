# Inputs: the backbone's weights into the working directory, and every image resized once.


rule weights:
    output:
        "results/weights/{backbone}.pth",
    log:
        "results/logs/weights/{backbone}.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
    shell:
        "{params.gatys} weights --export {wildcards.backbone:q} -o {output:q} 2> {log:q}"


rule resize:
    input:
        image_path,
    output:
        "results/resized/{kind}/{name}_{size}.png",
    log:
        "results/logs/resize/{kind}/{name}_{size}.log",
    conda:
        "../../environment.yml"
    params:
        gatys=GATYS,
        max_pixels=config["max_pixels"],
    shell:
        "{params.gatys} resize {input:q} -o {output:q} --size {wildcards.size} "
        "--max-pixels {params.max_pixels} 2> {log:q}"


rule skipped:
    output:
        "results/skipped.csv",
    log:
        "results/logs/skipped.log",
    conda:
        "../../environment.yml"
    params:
        lines=skipped_lines(),  # a param, so the list changing reruns this rule
    run:
        from gatys.inputs import write_skipped

        write_skipped(BAD, output[0])
