package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// rangeBars are the min–max whiskers of the chart's bars.
type rangeBars struct {
	plotter.XYs
	plotter.XErrors
}

// chart draws the ratio targets as horizontal bars (median over rounds),
// with min–max whiskers and a red mark at each target's limit.
func chart(ts []Target, paths ...string) error {
	var rows []Target
	for _, t := range ts {
		if t.Ratio && t.Got.Valid() {
			rows = append(rows, t)
		}
	}
	// Bars are drawn bottom-up; reverse so the chart reads like the table.
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
	p := plot.New()
	p.Title.Text = "qpool: headline ratios (median over rounds; bar < red mark = target met)"
	p.X.Label.Text = "ratio (qpool ÷ comparator, same round)"
	vals := make(plotter.Values, len(rows))
	labels := make([]string, len(rows))
	limits := make(plotter.XYs, len(rows))
	whisk := rangeBars{XYs: make(plotter.XYs, len(rows)), XErrors: make(plotter.XErrors, len(rows))}
	for i, t := range rows {
		vals[i] = t.Got.Median
		labels[i] = t.Label
		limits[i] = plotter.XY{X: t.Limit, Y: float64(i)}
		whisk.XYs[i] = plotter.XY{X: t.Got.Median, Y: float64(i)}
		whisk.XErrors[i].Low = t.Got.Median - t.Got.Min
		whisk.XErrors[i].High = t.Got.Max - t.Got.Median
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(12))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	bars.Color = color.RGBA{R: 70, G: 120, B: 180, A: 255}
	bars.LineStyle.Width = 0
	errs, err := plotter.NewXErrorBars(whisk)
	if err != nil {
		return err
	}
	marks, err := plotter.NewScatter(limits)
	if err != nil {
		return err
	}
	marks.GlyphStyle.Shape = draw.BoxGlyph{}
	marks.GlyphStyle.Color = color.RGBA{R: 210, A: 255}
	marks.GlyphStyle.Radius = vg.Points(4)
	p.Add(bars, errs, marks, plotter.NewGrid())
	p.NominalY(labels...)
	p.X.Min = 0
	hi := 1.0
	for _, t := range rows {
		hi = max(hi, t.Got.Max, t.Limit)
	}
	p.X.Max = hi * 1.05
	var ticks []plot.Tick
	for x := 0.0; x <= p.X.Max; x += 0.5 {
		ticks = append(ticks, plot.Tick{Value: x, Label: fmt.Sprintf("%.1f", x)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Add("median ratio", bars)
	p.Legend.Add("target limit", marks)
	p.Legend.Top = true
	for _, path := range paths {
		if err := p.Save(9*vg.Inch, vg.Length(len(rows))*0.32*vg.Inch+1.5*vg.Inch, path); err != nil {
			return err
		}
	}
	return nil
}
